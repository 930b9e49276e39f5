#!/usr/bin/env bash
# Measures what `lb.upstream_keepalive_timeout` does behind a real application server, and
# writes docs/benchmarks-keepalive.md.
#
# gunicorn (Debian 12's, gthread worker, its default 2 s keep-alive) serves a Flask app in two
# replicas behind bgd's nginx 1.30. POST clients (bgd-load, no retries; each POST on a fresh
# connection to nginx, so only nginx <-> gunicorn is measured) send a POST every PACE ms, so nginx's pooled upstream connections sit idle for about as long as
# gunicorn keeps them. With the timeout at gunicorn's own 2 s (bgd's old default), nginx
# sometimes reuses a connection gunicorn is closing: that request gets 502. At 1 s (the
# default now) nginx closes first. No switch happens: every failure is this race.
# Usage: scripts/bench-keepalive.sh [SECONDS] [PACE_MS]   (default 120 s per setting, 2000 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-120}
PACE=${2:-2000}
OUT=docs/benchmarks-keepalive.md

log() { printf 'bench: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jfield() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(d$1)"; }

scripts/build-images.sh nginx gunicorn
log "building bgd and bgd-load (release)"
cargo build --release --quiet --bins
BGD=$PWD/target/release/bgd
LOAD=$PWD/target/release/bgd-load
work=$(mktemp -d)
apps=(bench-ka-2s bench-ka-1s)

cleanup() {
  for app in "${apps[@]}"; do
    ids=$(docker ps -aq --filter "label=bgd.app=$app" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    docker rm -f "$app-lb" >/dev/null 2>&1 || true
    docker volume rm -f "$app-lb-bgd" >/dev/null 2>&1 || true
    docker network rm "$app-net" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
work=$(mktemp -d)

declare -A R

# measure APP TIMEOUT: deploys gunicorn with lb.upstream_keepalive_timeout TIMEOUT, runs the
# POST load for SECONDS_EACH, records failures and requests
measure() {
  local app=$1 timeout=$2 live preview
  live=$(free_port); preview=$(free_port)
  mkdir -p "$work/$app"
  cat > "$work/$app/bgd.yaml" <<EOF
app: $app
replicas: 2
container:
  port: 8000
  command: ["gunicorn", "--bind", "0.0.0.0:8000", "--threads", "4", "app:app"]
readiness: { path: /health, interval: 100ms, successes: 2, deadline: 30s }
lb:
  image: bgd-nginx:1.30
  publish: ["127.0.0.1:$live:80", "127.0.0.1:$preview:8081"]
  upstream_keepalive_timeout: $timeout
switch: { verify: 0s }
EOF
  "$BGD" -f "$work/$app/bgd.yaml" -q deploy bgd-gunicorn:test >/dev/null
  log "upstream_keepalive_timeout $timeout: 16 POST clients every ${PACE} ms for ${SECONDS_EACH}s"
  "$LOAD" --url "http://127.0.0.1:$live/" --post 16 --post-pace-ms "$PACE" --post-close \
    --duration "$SECONDS_EACH" > "$work/$app.json"
  R[fail_$timeout]=$(jfield '["failures"]' < "$work/$app.json")
  R[req_$timeout]=$(jfield '["requests"]' < "$work/$app.json")
  R[kinds_$timeout]=$(python3 -c "import json,sys; k=json.loads(sys.stdin.read().strip().splitlines()[-1])['failure_kinds']; print(', '.join('%s %d' % kv for kv in k.items()) or '-')" < "$work/$app.json")
}

measure bench-ka-2s 2s
measure bench-ka-1s 1s

rate() { python3 -c "f,r=$1,$2; print('1 in %d' % round(r/f) if f else 'none')"; }

{
  cat <<EOF
# Benchmarks: upstream keep-alive behind gunicorn

Produced by \`scripts/bench-keepalive.sh $SECONDS_EACH $PACE\` on $(date -u +%Y-%m-%d) (Docker Engine
$(docker version --format '{{.Server.Version}}'), $(nproc) cores). Both settings measured in the
same run, one after the other, on the same host.

gunicorn 20.1 (Debian 12, \`--threads 4\`: the gthread worker, whose keep-alive timeout
defaults to 2 s) serves a Flask app in two replicas behind bgd's nginx 1.30. 16 POST clients
(\`bgd-load\`, no retries) each send one POST every $PACE ms, so nginx's pooled upstream
connections sit idle for about as long as gunicorn keeps them open. Each POST goes on a fresh
connection to nginx, so every failure below is between nginx and gunicorn. No switch
happens during the measurement.

| \`lb.upstream_keepalive_timeout\` | failed POSTs | rate | kinds |
|---|---|---|---|
| 2s (bgd's default before; gunicorn's own) | ${R[fail_2s]} of ${R[req_2s]} | $(rate "${R[fail_2s]}" "${R[req_2s]}") | ${R[kinds_2s]} |
| 1s (the default) | ${R[fail_1s]} of ${R[req_1s]} | $(rate "${R[fail_1s]}" "${R[req_1s]}") | ${R[kinds_1s]} |

At 2 s nginx can pick a pooled connection in the instant gunicorn closes it; the request
then fails with 502 (nginx does not retry a POST). Below the server's own idle timeout, nginx
always closes first. bgd also sets \`max_fails=0\`, so such an error never takes a replica out
of rotation for nginx's default 10 s (\`tests/servers.rs\` checks that end to end, and that
gunicorn behind bgd's defaults loses nothing through two switches).
EOF
} > "$OUT"
log "wrote $OUT"
cat "$OUT"
