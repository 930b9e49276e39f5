#!/usr/bin/env bash
# Benchmarks bgd's switch against the naive recipe, side by side in one run on this host, and
# writes docs/benchmarks.md.
#
#   naive:  write the other color's IPs into an upstream file, `docker cp` it into nginx,
#           `docker exec nginx nginx -s reload` (verifies nothing)
#   bgd:    `bgd rollback` (readiness pass, validated swap, reload, handover and drain wait,
#           confirmation through the live listener, state recorded on the host)
#
# For nginx 1.30 (has keepalive_min_timeout) and nginx 1.22 (Debian 12, lacks it), it measures
#   - switch latency, idle: naive = cp + exec; bgd = its switch step (switch_ms)
#   - wall time of a whole `bgd rollback`, idle
#   - failed requests while switching under keep-alive load (bgd-load: 16 saturating and 16
#     paced keep-alive connections, 2 Connection: close clients, 2 POST clients, no retries)
# Usage: scripts/bench-switch.sh [SWITCHES]   (default 10 switches per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
OUT=docs/benchmarks.md
# the block scripts/bench-remote.sh maintains in the same file
remote_block=$(sed -n '/^<!-- bench-remote:begin -->$/,/^<!-- bench-remote:end -->$/p' "$OUT" 2>/dev/null || true)
# the other scripts' sections are kept too: scripts/bench.sh's (first), bench-progressive.sh's
bench_block=$(sed -n '/^<!-- bench:start -->$/,/^<!-- bench:end -->$/p' "$OUT" 2>/dev/null || true)
progressive_block=$(sed -n '/^<!-- progressive:start -->$/,/^<!-- progressive:end -->$/p' "$OUT" 2>/dev/null || true)

log() { printf 'bench: %s\n' "$*" >&2; }
ms_now() { date +%s%N | cut -b1-13; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"} else if (NR%2) {print a[(NR+1)/2]} else {print int((a[NR/2]+a[NR/2+1])/2)}}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jfield() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }

scripts/build-images.sh demo nginx nginx-old
log "building bgd and bgd-load (release)"
cargo build --release --quiet --bins
BGD=$PWD/target/release/bgd
LOAD=$PWD/target/release/bgd-load
work=$(mktemp -d)

cleanup() {
  for app in bench-bgd-130 bench-bgd-122 bench-naive-130 bench-naive-122; do
    # two --filter label= options would have to match both: ask once per label
    ids="$(docker ps -aq --filter "label=bgd.app=$app" 2>/dev/null || true) $(docker ps -aq --filter "label=bench=$app" 2>/dev/null || true)"
    # shellcheck disable=SC2086
    [ -z "${ids// /}" ] || docker rm -f $ids >/dev/null 2>&1 || true
    docker rm -f "$app-lb" >/dev/null 2>&1 || true
    docker volume rm -f "$app-lb-bgd" >/dev/null 2>&1 || true
    docker network rm "$app-net" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
work=$(mktemp -d)

# start_load PORT NAME: runs bgd-load in the background until $work/NAME.stop exists
start_load() {
  rm -f "$work/$2.stop"
  "$LOAD" --url "http://127.0.0.1:$1/" --keepalive 16 --paced 16 --pace-ms 5 --close 2 --post 2 \
    --duration 900 --stop-file "$work/$2.stop" > "$work/$2.json" &
  sleep 1
}
stop_load() { touch "$work/$1.stop"; wait; }

declare -A R

bench_bgd() {
  local tag=$1 app=bench-bgd-${1//./}
  local live preview
  live=$(free_port); preview=$(free_port)
  mkdir -p "$work/$app"
  cat > "$work/$app/bgd.yaml" <<EOF
app: $app
replicas: 2
container:
  port: 8080
readiness: { path: /health, interval: 100ms, successes: 2, deadline: 20s }
lb:
  image: bgd-nginx:$tag
  publish: ["127.0.0.1:$live:80", "127.0.0.1:$preview:8081"]
switch: { drain: 10s }
EOF
  local b="$BGD -f $work/$app/bgd.yaml -q"
  $b deploy bgd-demo:v1 >/dev/null
  $b deploy bgd-demo:v2 >/dev/null
  : > "$work/$app.wall"; : > "$work/$app.switch"
  echo "$live" > "$work/$app.port"
}

# one idle bgd rollback, timed
bgd_idle_once() {
  local app=bench-bgd-${1//./} s e out
  s=$(ms_now)
  out=$($BGD -f "$work/$app/bgd.yaml" --json rollback)
  e=$(ms_now)
  echo $((e - s)) >> "$work/$app.wall"
  echo "$out" | jfield '["switch_ms"]' >> "$work/$app.switch"
}

bgd_under_load() {
  local tag=$1 app=bench-bgd-${1//./}
  local live b="$BGD -f $work/bench-bgd-${1//./}/bgd.yaml -q"
  live=$(cat "$work/$app.port")
  log "bgd, nginx $tag: $N rollbacks under load"
  start_load "$live" "$app"
  for _ in $(seq "$N"); do
    $b rollback >/dev/null 2>"$work/$app.err" || { cat "$work/$app.err" >&2; }
    sleep 1
  done
  stop_load "$app"
  R[bgd_wall_$tag]=$(median < "$work/$app.wall")
  R[bgd_switch_$tag]=$(median < "$work/$app.switch")
  R[bgd_fail_$tag]=$(jfield '["failures"]' < "$work/$app.json")
  R[bgd_req_$tag]=$(jfield '["requests"]' < "$work/$app.json")
}

bench_naive() {
  local tag=$1 app=bench-naive-${1//./}
  local port net=$app-net
  port=$(free_port)
  docker network create "$net" >/dev/null
  for color in blue green; do
    local image=bgd-demo:v1
    [ "$color" = green ] && image=bgd-demo:v2
    for n in 1 2; do
      docker run -d --name "$app-$color-$n" --label "bench=$app" --network "$net" "$image" >/dev/null
    done
  done
  ips() { for n in 1 2; do docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$app-$1-$n"; done; }
  for color in blue green; do
    ips "$color" | awk '{print "server " $1 ":8080;"}' > "$work/$app-$color.conf"
  done
  cat > "$work/$app-site.conf" <<'EOF'
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
  docker create --name "$app-lb" --label "bench=$app" --network "$net" -p "127.0.0.1:$port:80" "bgd-nginx:$tag" >/dev/null
  docker cp "$work/$app-site.conf" "$app-lb:/etc/nginx/conf.d/default.conf"
  docker cp "$work/$app-blue.conf" "$app-lb:/etc/nginx/upstream.conf"
  docker start "$app-lb" >/dev/null
  sleep 1
  echo blue > "$work/$app.current"
  echo "$port" > "$work/$app.port"
  : > "$work/$app.switch"; : > "$work/$app.served"
}

# the naive recipe: the other color's upstream file in, reload
naive_switch() {
  local app=bench-naive-${1//./} current
  current=$(cat "$work/$app.current")
  current=$([ "$current" = blue ] && echo green || echo blue)
  echo "$current" > "$work/$app.current"
  docker cp "$work/$app-$current.conf" "$app-lb:/etc/nginx/upstream.conf"
  docker exec "$app-lb" nginx -s reload 2>/dev/null
}

# the version the live listener serves now (the demo app's X-App-Version header)
served_version() {
  curl -s -o /dev/null -D - --max-time 1 "http://127.0.0.1:$1/" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-app-version" {print $2}'
}

naive_idle_once() {
  local app=bench-naive-${1//./} s e port want
  port=$(cat "$work/$app.port")
  s=$(ms_now); naive_switch "$1"; e=$(ms_now)
  echo $((e - s)) >> "$work/$app.switch"
  # what an operator's script must add to know the switch happened: poll until it serves
  want=$([ "$(cat "$work/$app.current")" = green ] && echo v2 || echo v1)
  until [ "$(served_version "$port")" = "$want" ]; do
    [ $(($(ms_now) - s)) -lt 5000 ] || { log "naive: nginx did not serve $want within 5s"; break; }
  done
  e=$(ms_now)
  echo $((e - s)) >> "$work/$app.served"
}

naive_under_load() {
  local tag=$1 app=bench-naive-${1//./} port
  port=$(cat "$work/$app.port")
  log "naive, nginx $tag: $N switches under load"
  start_load "$port" "$app"
  for _ in $(seq "$N"); do naive_switch "$tag"; sleep 1; done
  stop_load "$app"
  R[naive_switch_$tag]=$(median < "$work/$app.switch")
  R[naive_served_$tag]=$(median < "$work/$app.served")
  R[naive_fail_$tag]=$(jfield '["failures"]' < "$work/$app.json")
  R[naive_req_$tag]=$(jfield '["requests"]' < "$work/$app.json")
}

for tag in 1.30 1.22; do
  bench_naive "$tag"
  bench_bgd "$tag"
  # idle timings interleaved, so both see the same machine at the same moments
  log "nginx $tag: $N idle switches each, naive and bgd alternating"
  for _ in $(seq "$N"); do
    naive_idle_once "$tag"; sleep 0.3
    bgd_idle_once "$tag"; sleep 0.3
  done
  naive_under_load "$tag"
  bgd_under_load "$tag"
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
engine=$(docker version --format '{{.Server.Version}}')
driver=$(docker info --format '{{.Driver}}')
{
  printf '# Benchmarks\n\n'
  [ -z "$bench_block" ] || printf '%s\n\n' "$bench_block"
  cat <<EOF
Produced by \`scripts/bench-switch.sh $N\` on $(date -u +%Y-%m-%d) (Docker Engine $engine,
storage driver $driver, $(nproc) cores, local socket). Every figure below comes from that one run, bgd and the naive
baseline side by side on the same host, the idle timings interleaved (naive, bgd, naive, ...)
so both meet the same machine; rerun the script to reproduce them. Medians over $N switches
each. This machine is shared and its container-filesystem operations vary by ±30% from one
minute to the next: compare the ratios within a run, not figures across runs.

- **naive**: write the other color's IPs into an upstream file, \`docker cp\` it into nginx,
  \`docker exec nginx nginx -s reload\`. It verifies nothing and returns before nginx has
  switched.
- **bgd**: \`bgd rollback\` with 2 replicas per color, built with \`--release\`: one readiness pass
  over the parked replicas, then one exec that validates, swaps and reloads the config, waits
  until no old nginx worker accepts connections and the old workers have drained, and records
  the new state; then confirmation through the live listener.
- **load**: \`bgd-load\` (in this repository) against the live listener: 16 saturating and 16
  paced keep-alive connections, 2 \`Connection: close\` clients and 2 POST clients, none of which
  retries. A failure is a connect error, reset, EOF before the full response, timeout or 5xx.
  One switch per second.

| nginx | measurement | naive | bgd | bgd / naive |
|---|---|---|---|---|
EOF
  for tag in 1.30 1.22; do
    echo "| $tag | switch latency, idle (median ms) | ${R[naive_switch_$tag]} | ${R[bgd_switch_$tag]} | $(ratio "${R[bgd_switch_$tag]}" "${R[naive_switch_$tag]}") |"
    echo "| $tag | whole \`bgd rollback\`, idle (median ms) | ${R[naive_switch_$tag]} | ${R[bgd_wall_$tag]} | $(ratio "${R[bgd_wall_$tag]}" "${R[naive_switch_$tag]}") |"
    echo "| $tag | whole \`bgd rollback\` vs naive until the live listener serves the new color (median ms) | ${R[naive_served_$tag]} | ${R[bgd_wall_$tag]} | $(ratio "${R[bgd_wall_$tag]}" "${R[naive_served_$tag]}") |"
    echo "| $tag | failed requests under load, $N switches | ${R[naive_fail_$tag]} of ${R[naive_req_$tag]} | ${R[bgd_fail_$tag]} of ${R[bgd_req_$tag]} | |"
  done
  cat <<'EOF'

Reading it:

- The naive figure stops when `nginx -s reload` returns, before nginx has switched; the third
  row adds what a script needs to know the switch happened (polling the live listener until
  the new color answers). bgd's switch latency includes more: waiting for nginx's new
  workers, for the old ones to stop accepting (nginx tells them ~100 ms after starting the new
  ones, a fixed delay in nginx) and to drain, and recording the state on the host, all in one
  exec. That fixed ~100 ms is why the ratio grows when the daemon is fast.
- The whole `bgd rollback` adds process start, the Docker API handshake, a look at the
  containers' labels and at nginx's own `/__bgd` answer, one readiness probe per parked
  replica, and the confirmation through the live listener. It touches the container
  filesystem once (the exec); the naive recipe twice (`docker cp`, `docker exec`).
- With nginx 1.22, `keepalive_min_timeout` does not exist: bgd warns, and keep-alive requests
  that race a reload can be reset whichever tool does the switch.

`scripts/bench-keepalive.sh` measures `lb.upstream_keepalive_timeout` behind gunicorn:
[benchmarks-keepalive.md](benchmarks-keepalive.md).
EOF
  # the remote figures (scripts/bench-remote.sh) are kept from the previous file
  [ -z "$remote_block" ] || printf '\n%s\n' "$remote_block"
  [ -z "$progressive_block" ] ||
    printf '\n## Progressive delivery (mirror and canary)\n\n%s\n' "$progressive_block"
} > "$OUT.new"
mv "$OUT.new" "$OUT"
log "wrote $OUT"
cat "$OUT"
