#!/usr/bin/env bash
# Measures bgd's performance targets side by side with their baselines, on this host, in one
# run, and writes the figures, tables and SVG charts into docs/benchmarks.md (between
# <!-- bench:start --> and <!-- bench:end -->) and docs/img/bench-*.svg:
#
#  1. Rollback latency with 2 replicas per color, idle: `bgd rollback` against the naive recipe
#     (an upstream file naming the other color's IPs, `docker cp` into nginx, `docker exec
#     nginx nginx -s reload`), the samples interleaved (naive, bgd, naive, ...); `bgd status`.
#  2. Against replicas (1, 8, 32 per color, one app each): `bgd deploy` of a second release;
#     the daemon's floor (N parallel `docker run -d` on the app's network, and N parallel
#     `docker rm -f`; also N parallel create+start through the Engine API), taken between the
#     deploys; the Engine API requests each command makes (`bgd -v`); bgd's peak RSS during a
#     deploy. The apps stay up (a smaller count's app idles while a larger one is measured);
#     once all are deployed, `bgd status` and `bgd rollback` of each, the samples interleaved
#     across the counts.
#  3. Many apps on one nginx (lb.hosts): one app's `bgd rollback` with 1 app on the nginx,
#     with 20, and with 20 while bgd-load runs against each of the other 19 host names (their
#     failed requests counted).
#
# The demo app (bgd-demo:v1/v2) behind bgd-nginx:1.30, both built locally by
# scripts/build-images.sh. Loopback ports only. Every container, network and volume it makes
# is named (or labelled) bench-all-*, and is removed at the end, on failure too.
# Medians everywhere; the full run takes 5 to 8 minutes on 2 cores.
# Usage: scripts/bench.sh [--quick]     (--quick: few samples, small counts, to debug it)
#        BENCH_KEEP=DIR scripts/bench.sh  also copies every raw sample into DIR
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD

QUICK=0
case "${1:-}" in
  --quick) QUICK=1 ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--quick]" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then
  ROLLBACKS=4          # part 1: samples of each tool
  DEPLOYS=2            # part 2: timed deploys (and floors) per replica count
  SAMPLES=3            # part 2: status and rollback samples per replica count
  REPLICAS=(1 2 4)
  APPS=3               # part 3: apps on the shared nginx
  MANY=3               # part 3: rollback samples per setting
else
  ROLLBACKS=20
  DEPLOYS=3
  SAMPLES=11
  REPLICAS=(1 8 32)
  APPS=20
  MANY=7
fi

P=bench-all          # prefix of everything this script creates on the Docker host
DOC=docs/benchmarks.md
IMG=docs/img
LOAD_PIDS=()

log() { printf 'bench: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Everything of ours on the Docker host: containers named bench-all-* or labelled
# bgd.app=bench-all-* or bench-all; then volumes and networks named bench-all-*.
remove_all() {
  local prefix=${1:-$P-} ids
  ids=$(
    {
      docker ps -a --format '{{.ID}} {{.Names}}' 2>/dev/null | awk -v p="$prefix" 'index($2, p) == 1 {print $1}'
      docker ps -a --filter label=bgd.app --format '{{.ID}} {{.Label "bgd.app"}}' 2>/dev/null | awk -v p="$prefix" 'index($2, p) == 1 {print $1}'
      if [ "$prefix" = "$P-" ]; then docker ps -aq --filter "label=$P" 2>/dev/null; fi
    } | sort -u
  )
  # shellcheck disable=SC2086
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  local v
  for v in $(docker volume ls -q 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1'); do
    docker volume rm -f "$v" >/dev/null 2>&1 || true
  done
  for v in $(docker network ls --format '{{.Name}}' 2>/dev/null | awk -v p="$prefix" 'index($1, p) == 1'); do
    docker network rm "$v" >/dev/null 2>&1 || true
  done
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  [ -z "${work:-}" ] || touch "$work/load.stop" 2>/dev/null
  local pid
  for pid in "${LOAD_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${LOAD_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  log "removing the containers, networks and volumes named $P-*"
  remove_all "$P-"
  if [ -n "${BENCH_KEEP:-}" ] && [ -n "${work:-}" ]; then
    mkdir -p "$BENCH_KEEP" && cp -r "$work"/. "$BENCH_KEEP"/ && log "raw samples kept in $BENCH_KEEP"
  fi
  [ -z "${work:-}" ] || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

T0=$SECONDS
work=$(mktemp -d)

scripts/build-images.sh demo nginx
log "building bgd and bgd-load (release)"
cargo build --release --quiet --bins
BGD=$ROOT/target/release/bgd
LOAD=$ROOT/target/release/bgd-load
REPORT=$ROOT/scripts/bench_report.py

log "removing leftovers of an earlier run"
remove_all "$P-"

# --- measuring -----------------------------------------------------------------------------

# record FILE START_US: appends the milliseconds since START_US (an $EPOCHREALTIME without
# its dot) to FILE
record() {
  local end=${EPOCHREALTIME/./}
  local d=$((end - $2))
  printf '%d.%d\n' $((d / 1000)) $(((d % 1000) / 100)) >> "$1"
}

# timed FILE CMD...: runs CMD, appends its wall time to FILE; a failure is logged and listed
# in $work/failures (and in the report), and gives no sample
timed() {
  local file=$1; shift
  local start=${EPOCHREALTIME/./}
  if "$@" > "$work/last.out" 2> "$work/last.err"; then
    record "$file" "$start"
  else
    local rc=$?
    local what="${*//$ROOT\//}"
    what=${what//$work\//}
    log "FAILED (exit $rc): $what"
    tail -n 5 "$work/last.err" | sed 's/^/bench:   | /' >&2
    printf 'exit %s: %s: %s\n' "$rc" "$what" "$(grep -v '^\s*$' "$work/last.err" | tail -n 1)" >> "$work/failures"
  fi
}

# must DESCRIPTION CMD...: runs CMD (setup); stops the benchmark when it fails
must() {
  local what=$1; shift
  if ! "$@" > "$work/last.out" 2> "$work/last.err"; then
    cat "$work/last.err" >&2
    log "$what failed; stopping"
    exit 1
  fi
}

# api_count FILE: the "Docker API requests: N" that `bgd -v` printed on stderr into FILE
api_count() { grep -o 'Docker API requests: [0-9]*' "$1" | tail -n 1 | awk '{print $4}'; }

# write_config FILE APP REPLICAS LIVE PREVIEW [TOP_YAML] [LB_YAML]
write_config() {
  local file=$1 app=$2 replicas=$3 live=$4 preview=$5 top=${6:-} lb=${7:-}
  mkdir -p "$(dirname "$file")"
  cat > "$file" <<EOF
app: $app
replicas: $replicas
$top
container: { port: 8080 }
readiness: { path: /health, interval: 100ms, successes: 1, deadline: 60s }
lb:
  image: bgd-nginx:1.30
  publish: ["127.0.0.1:$live:80", "127.0.0.1:$preview:8081"]
  url: http://127.0.0.1:$live
  preview_url: http://127.0.0.1:$preview
$lb
switch: { verify: 0s, drain: 5s }
EOF
}

# --- 1. rollback latency, 2 replicas, bgd against the naive recipe -------------------------

part1() {
  local d=$work/p1 app=$P-rb naive=$P-naive
  mkdir -p "$d"
  local live preview nport
  live=$(free_port); preview=$(free_port); nport=$(free_port)
  write_config "$d/bgd.yaml" "$app" 2 "$live" "$preview"
  log "1. rollback, 2 replicas: setting up bgd ($app) and the naive recipe ($naive)"
  must "bgd deploy bgd-demo:v1" "$BGD" -f "$d/bgd.yaml" -q deploy bgd-demo:v1
  must "bgd deploy bgd-demo:v2" "$BGD" -f "$d/bgd.yaml" -q deploy bgd-demo:v2

  # the naive setup: 2 containers per color on a network, nginx including an upstream file
  docker network create "$naive-net" >/dev/null
  local color n image
  for color in blue green; do
    image=bgd-demo:v1
    [ "$color" = green ] && image=bgd-demo:v2
    for n in 1 2; do
      docker run -d --name "$naive-$color-$n" --label "$P=1" --network "$naive-net" "$image" >/dev/null
    done
  done
  local -a blue_ips green_ips
  for n in 1 2; do
    blue_ips+=("$(docker inspect -f "{{(index .NetworkSettings.Networks \"$naive-net\").IPAddress}}" "$naive-blue-$n")")
    green_ips+=("$(docker inspect -f "{{(index .NetworkSettings.Networks \"$naive-net\").IPAddress}}" "$naive-green-$n")")
  done
  cat > "$d/site.conf" <<'EOF'
upstream app {
    include /etc/nginx/upstream.conf;
    keepalive 32;
}
server {
    listen 80 default_server;
    location / {
        proxy_pass http://app;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
}
EOF
  printf 'server %s:8080;\n' "${blue_ips[@]}" > "$d/upstream.conf"
  docker create --name "$naive-lb" --label "$P=1" --network "$naive-net" -p "127.0.0.1:$nport:80" bgd-nginx:1.30 >/dev/null
  docker cp "$d/site.conf" "$naive-lb:/etc/nginx/conf.d/default.conf"
  docker cp "$d/upstream.conf" "$naive-lb:/etc/nginx/upstream.conf"
  docker start "$naive-lb" >/dev/null
  local current=v1 want i start served
  for i in $(seq 1 50); do
    [ "$(served_version "$nport")" = v1 ] && break
    [ "$i" -lt 50 ] || { log "the naive nginx does not serve v1"; exit 1; }
    sleep 0.1
  done

  log "1. $ROLLBACKS rollbacks each, naive and bgd alternating"
  for i in $(seq 1 "$ROLLBACKS"); do
    # naive: the other color's upstream file, copied in, reload; then (not part of the
    # recipe's own time) poll the live listener until it serves the other color
    if [ "$current" = v1 ]; then want=v2; else want=v1; fi
    start=${EPOCHREALTIME/./}
    if [ "$want" = v2 ]; then
      printf 'server %s:8080;\n' "${green_ips[@]}" > "$d/upstream.conf"
    else
      printf 'server %s:8080;\n' "${blue_ips[@]}" > "$d/upstream.conf"
    fi
    docker cp "$d/upstream.conf" "$naive-lb:/etc/nginx/upstream.conf"
    docker exec "$naive-lb" nginx -s reload 2>/dev/null
    record "$d/naive.ms" "$start"
    served=0
    while [ $(((${EPOCHREALTIME/./} - start) / 1000)) -lt 5000 ]; do
      if [ "$(served_version "$nport")" = "$want" ]; then served=1; break; fi
    done
    if [ "$served" = 1 ]; then record "$d/naive_served.ms" "$start"; else log "naive: nginx did not serve $want within 5 s"; fi
    current=$want
    sleep 0.3
    timed "$d/bgd.ms" "$BGD" -f "$d/bgd.yaml" -q rollback
    sleep 0.3
  done
  log "1. bgd status, $SAMPLES times"
  for i in $(seq 1 "$SAMPLES"); do timed "$d/status.ms" "$BGD" -f "$d/bgd.yaml" -q status; done
  "$BGD" -f "$d/bgd.yaml" -v status > "$d/v_status.err" 2>&1 || true
  api_count "$d/v_status.err" > "$d/api_status" || true
  "$BGD" -f "$d/bgd.yaml" -v rollback > "$d/v_rollback.err" 2>&1 || true
  api_count "$d/v_rollback.err" > "$d/api_rollback" || true
  remove_all "$app-"
  remove_all "$naive-"
}

# served_version PORT: the demo app's X-App-Version header through the listener on PORT
served_version() {
  curl -s -o /dev/null -D - --max-time 1 "http://127.0.0.1:$1/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-app-version" {print $2}'
}

# --- 2. against replicas --------------------------------------------------------------------

# floor N NETWORK DIR: N parallel `docker run -d` of bgd-demo:v1 on NETWORK, timed, then N
# parallel `docker rm -f` of them, timed; then the same through the Engine API
floor() {
  local n=$1 net=$2 d=$3 i start ok=1
  local -a pids=()
  rm -f "$d"/floor.id.*
  start=${EPOCHREALTIME/./}
  for i in $(seq 1 "$n"); do
    docker run -d --label "$P=1" --network "$net" bgd-demo:v1 > "$d/floor.id.$i" 2>>"$d/floor.err" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i" || ok=0; done
  [ "$ok" = 1 ] && record "$d/floor_run.ms" "$start"
  local ids
  ids=$(cat "$d"/floor.id.*)
  pids=()
  start=${EPOCHREALTIME/./}
  for i in $ids; do
    docker rm -f "$i" >/dev/null 2>>"$d/floor.err" &
    pids+=("$!")
  done
  for i in "${pids[@]}"; do wait "$i" || ok=0; done
  [ "$ok" = 1 ] && record "$d/floor_rm.ms" "$start"
  [ "$ok" = 1 ] || { log "floor with $n containers: a docker command failed"; tail -n 3 "$d/floor.err" >&2; }
  python3 "$REPORT" api-floor "$n" "$net" bgd-demo:v1 "$P" >> "$d/floor_api.tsv" 2>>"$d/floor.err" \
    || log "floor through the Engine API failed (see above)"
}

part2() {
  local n=$1 d=$work/p2/$1 app=$P-r$1
  mkdir -p "$d"
  local live preview
  live=$(free_port); preview=$(free_port)
  write_config "$d/bgd.yaml" "$app" "$n" "$live" "$preview"
  local b=("$BGD" -f "$d/bgd.yaml")
  log "2. $n replicas: first deploy (bgd-demo:v1), then bgd-demo:v2 (not timed)"
  must "bgd deploy bgd-demo:v1 ($n replicas)" "${b[@]}" -q deploy bgd-demo:v1
  must "bgd deploy bgd-demo:v2 ($n replicas)" "${b[@]}" -q deploy bgd-demo:v2
  local cur=v2 next i
  for i in $(seq 1 "$DEPLOYS"); do
    if [ "$cur" = v1 ]; then next=v2; else next=v1; fi
    log "2. $n replicas: deploy $i/$DEPLOYS (bgd-demo:$next), then the floor"
    timed "$d/deploy.ms" "${b[@]}" -q deploy "bgd-demo:$next"
    cur=$next
    sleep 1
    floor "$n" "$app-net" "$d"
    sleep 1
  done
  # one more deploy, with -v (its Engine API requests) under a peak-RSS meter
  if [ "$cur" = v1 ]; then next=v2; else next=v1; fi
  log "2. $n replicas: deploy with -v, its API requests and peak RSS"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f %M -o "$d/rss_kb" "${b[@]}" -v deploy "bgd-demo:$next" > "$d/v_deploy.err" 2>&1 || log "bgd -v deploy failed"
  else
    python3 "$REPORT" maxrss "$d/rss_kb" "${b[@]}" -v deploy "bgd-demo:$next" > "$d/v_deploy.err" 2>&1 || log "bgd -v deploy failed"
  fi
  api_count "$d/v_deploy.err" > "$d/api_deploy" || true
}

# status and rollback of every replica count's app, the samples interleaved across the counts
# (1, 8, 32, 1, 8, 32, ...): each count meets the same host (a burst of container removals
# leaves the daemon busy for a while), and the ratios compare like with like
part2_views() {
  local n i d
  log "2. status and rollback, $SAMPLES each, interleaved across ${REPLICAS[*]} replicas"
  sleep 5
  for i in $(seq 1 "$SAMPLES"); do
    for n in "${REPLICAS[@]}"; do
      d=$work/p2/$n
      timed "$d/status.ms" "$BGD" -f "$d/bgd.yaml" -q status
    done
  done
  for i in $(seq 1 "$SAMPLES"); do
    for n in "${REPLICAS[@]}"; do
      d=$work/p2/$n
      timed "$d/rollback.ms" "$BGD" -f "$d/bgd.yaml" -q rollback
      sleep 0.3
    done
  done
  for n in "${REPLICAS[@]}"; do
    d=$work/p2/$n
    "$BGD" -f "$d/bgd.yaml" -v status > "$d/v_status.err" 2>&1 || true
    api_count "$d/v_status.err" > "$d/api_status" || true
    "$BGD" -f "$d/bgd.yaml" -v rollback > "$d/v_rollback.err" 2>&1 || true
    api_count "$d/v_rollback.err" > "$d/api_rollback" || true
    remove_all "$P-r$n-"
  done
}

# --- 3. many apps on one nginx --------------------------------------------------------------

part3() {
  local d=$work/p3 edge=$P-edge net=$P-mnet
  mkdir -p "$d"
  local live preview i app
  live=$(free_port); preview=$(free_port)
  local -a apps=()
  for i in $(seq 1 "$APPS"); do
    app=$(printf '%s-m%02d' "$P" "$i")
    apps+=("$app")
    write_config "$d/$app/bgd.yaml" "$app" 1 "$live" "$preview" "network: $net" \
      "  container: $edge
  hosts: [$app.test]"
  done
  local first=${apps[0]}
  local b=("$BGD" -f "$d/$first/bgd.yaml")
  log "3. one app ($first) alone on the nginx $edge"
  must "bgd deploy bgd-demo:v1 ($first)" "${b[@]}" -q deploy bgd-demo:v1
  must "bgd deploy bgd-demo:v2 ($first)" "${b[@]}" -q deploy bgd-demo:v2
  for i in $(seq 1 "$MANY"); do timed "$d/one.ms" "${b[@]}" -q rollback; sleep 0.3; done
  log "3. deploying the other $((APPS - 1)) apps on the same nginx"
  for app in "${apps[@]:1}"; do
    must "bgd deploy bgd-demo:v1 ($app)" "$BGD" -f "$d/$app/bgd.yaml" -q deploy bgd-demo:v1
  done
  log "3. $first's rollback with $APPS apps on the nginx, idle"
  for i in $(seq 1 "$MANY"); do timed "$d/many_idle.ms" "${b[@]}" -q rollback; sleep 0.3; done
  log "3. bgd-load on the other $((APPS - 1)) apps (3 paced keep-alive clients each, 25 ms apart)"
  rm -f "$work/load.stop"
  for app in "${apps[@]:1}"; do
    echo "$app" > "$d/$app.expect"
    "$LOAD" --url "http://127.0.0.1:$live/" --host "$app.test" --paced 3 --pace-ms 25 \
      --color-header x-bgd-app --expect-file "$d/$app.expect" \
      --duration 900 --stop-file "$work/load.stop" > "$d/load-$app.json" 2> "$d/load-$app.err" &
    LOAD_PIDS+=("$!")
  done
  sleep 2
  log "3. $first's rollback with $APPS apps on the nginx, the others under load"
  for i in $(seq 1 "$MANY"); do timed "$d/many_load.ms" "${b[@]}" -q rollback; sleep 0.5; done
  sleep 1
  touch "$work/load.stop"
  local pid
  for pid in "${LOAD_PIDS[@]}"; do wait "$pid" || log "a bgd-load exited with an error"; done
  LOAD_PIDS=()
  remove_all "$edge"
  remove_all "$P-m"
}

# --- run --------------------------------------------------------------------------------------

engine=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)
driver=$(docker info --format '{{.Driver}}' 2>/dev/null || echo unknown)
{
  echo "command=scripts/bench.sh${1:+ $1}"
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "engine=$engine"
  echo "driver=$driver"
  echo "cores=$(nproc)"
  echo "bgd=$("$BGD" --version 2>/dev/null || echo unknown)"
  rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  # what the binaries are built from (this script's own output in docs/ does not count)
  git diff --quiet HEAD -- src Cargo.toml Cargo.lock templates examples/demo-app 2>/dev/null \
    || rev="$rev with uncommitted changes to the sources"
  echo "revision=$rev"
  echo "rollbacks=$ROLLBACKS"
  echo "deploys=$DEPLOYS"
  echo "samples=$SAMPLES"
  echo "replicas=${REPLICAS[*]}"
  echo "apps=$APPS"
  echo "many=$MANY"
  echo "readiness_delay_ms=0"
} > "$work/meta"

part1
for n in "${REPLICAS[@]}"; do part2 "$n"; done
part2_views
part3

echo "seconds=$((SECONDS - T0))" >> "$work/meta"
log "writing $DOC and $IMG/bench-*.svg"
python3 "$REPORT" report "$work" "$DOC" "$IMG"
log "done in $((SECONDS - T0)) s"
