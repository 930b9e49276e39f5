#!/usr/bin/env bash
# Measures what progressive delivery costs and how exact it is, and writes the figures into
# docs/benchmarks.md (the "Progressive delivery" section, between its markers):
#
# - The mirror's cost on live latency: bgd-load (no retries; 4 saturating and 4 paced
#   keep-alive connections, 2 clients on a fresh connection per request) against the live
#   listener, its p50/p99 per client kind with no mirror, with a 10% and a 100% mirror of a
#   healthy candidate, and with a 100% mirror of a candidate 50 ms slower than live. Each
#   window is SECONDS long; the settings take turns, ROUNDS times, medians reported.
# - The canary's split: 1,000 distinct clients (each its own cookie jar and kept-alive
#   connection, as a browser, 20 at a time) send 10 requests each (10,000 in all) at a 10%,
#   25% and 50% canary; the observed share of requests and of clients on the canary, and how
#   many clients ever saw both sides. Three runs per share: the draw is random, so the spread
#   across runs is part of the answer.
#
# The demo app (bgd-demo:v1 live, v2 as the candidate) behind bgd's nginx 1.30, built with
# scripts/build-images.sh. Loopback only.
# Usage: scripts/bench-progressive.sh [ROUNDS] [SECONDS]   (default 3 rounds of 15 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-15}
DOC=docs/benchmarks.md

log() { printf 'bench: %s\n' "$*" >&2; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

scripts/build-images.sh demo nginx
log "building bgd and bgd-load (release)"
cargo build --release --quiet --bins
BGD=$PWD/target/release/bgd
LOAD=$PWD/target/release/bgd-load
app=bench-prog
work=$(mktemp -d)

cleanup() {
  ids=$(docker ps -aq --filter "label=bgd.app=$app" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  docker rm -f "$app-lb" >/dev/null 2>&1 || true
  docker volume rm -f "$app-lb-bgd" >/dev/null 2>&1 || true
  docker network rm "$app-net" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
work=$(mktemp -d)
live=$(free_port)
preview=$(free_port)

# config [EXTRA_YAML] [DELAY_MS]: the app's bgd.yaml, with EXTRA_YAML appended; the releases it
# starts answer `/` and `POST /echo` DELAY_MS late
config() {
  cat > "$work/bgd.yaml" <<EOF
app: $app
replicas: 2
container: { port: 8080, stop_timeout: 5s, env: { DEMO_DELAY_MS: "${2:-0}" } }
readiness: { path: /health, interval: 100ms, successes: 2, deadline: 30s }
lb:
  image: bgd-nginx:1.30
  publish: ["127.0.0.1:$live:80", "127.0.0.1:$preview:8081"]
  url: http://127.0.0.1:$live
  preview_url: http://127.0.0.1:$preview
switch: { verify: 1s, drain: 5s }
${1:-}
EOF
}
bgd() { (cd "$work" && "$BGD" "$@"); }

config
bgd -q deploy bgd-demo:v1 >/dev/null

# load NAME: SECS of load on the live listener, its summary in $work/NAME.json
load() {
  "$LOAD" --url "http://127.0.0.1:$live/" --keepalive 4 --paced 4 --pace-ms 5 --close 2 \
    --duration "$SECS" > "$work/$1.json"
}

# mirrored NAME SHARE DELAY_MS: the load while a `deploy --no-switch` mirrors SHARE of live
# traffic to a candidate answering DELAY_MS late; the candidate is discarded afterwards
mirrored() {
  local name=$1 share=$2 delay=$3
  # thresholds nothing breaks: a verdict would end the window early
  config "warmup: { mirror: { share: \"$share%\", for: $((SECS + 6))s, max_latency_ratio: 1000, max_error_increase: 100 } }" "$delay"
  bgd --json deploy --no-switch bgd-demo:v2 > "$work/$name.deploy" 2>/dev/null &
  local pid=$!
  # the mirror is on once its step started and nginx took the config
  for _ in $(seq 1 600); do
    grep '"step":"mirror"' "$work/$name.deploy" 2>/dev/null | grep -q '"status":"started"' && break
    sleep 0.1
  done
  sleep 2
  load "$name"
  wait "$pid" || true
  bgd -q discard >/dev/null 2>&1 || true
  config
}

settings=(none m10 m100 slow100)
for round in $(seq 1 "$ROUNDS"); do
  for s in "${settings[@]}"; do
    log "round $round: $s"
    case $s in
      none) load "$s-$round" ;;
      m10) mirrored "$s-$round" 10 0 ;;
      m100) mirrored "$s-$round" 100 0 ;;
      slow100) mirrored "$s-$round" 100 50 ;;
    esac
  done
done

# the split: 1,000 clients x 10 requests at each share
split() {
  python3 - "$live" <<'PY'
import http.client, json, sys, threading
port = int(sys.argv[1])
clients, each, workers = 1000, 10, 20
sides = {}          # client -> set of colors
requests = {"canary": 0, "stable": 0}
lock = threading.Lock()
def one(c, cookie):
    c.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
    r = c.getresponse()
    r.read()
    return r.getheader("X-Bgd-Color"), r.getheader("Set-Cookie")
def run(ids):
    for i in ids:
        cookie, seen = None, set()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(each):
            color, set_cookie = one(c, cookie)
            if set_cookie and not cookie:
                cookie = set_cookie.split(";")[0]
            seen.add(color)
            with lock:
                requests["canary" if color == "green" else "stable"] += 1
        c.close()
        with lock:
            sides[i] = seen
threads = [threading.Thread(target=run, args=(range(w, clients, workers),)) for w in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
total = sum(requests.values())
print(json.dumps({
    "requests": total,
    "canary_requests": requests["canary"],
    "canary_clients": sum(1 for s in sides.values() if s == {"green"}),
    "clients": len(sides),
    "both_sides": sum(1 for s in sides.values() if len(s) > 1),
}))
PY
}
config
for share in 10 25 50; do
  log "split at $share%"
  if [ "$share" = 10 ]; then
    bgd -q deploy --canary "$share" bgd-demo:v2 >/dev/null
  else
    bgd -q canary "$share" >/dev/null
  fi
  for run in 1 2 3; do split > "$work/split-$share-$run.json"; done
done
bgd -q rollback >/dev/null
bgd -q discard >/dev/null

# the tables
section=$(python3 - "$work" "$ROUNDS" "$SECS" "${settings[@]}" <<'PY'
import json, statistics, sys
work, rounds, secs, settings = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
names = {"none": "no mirror", "m10": "10% mirror", "m100": "100% mirror",
         "slow100": "100% mirror, candidate 50 ms slower"}
def med(setting, kind, field):
    vals = []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{work}/{setting}-{r}.json"))
        v = d["clients"].get(kind, {}).get(field)
        if v is not None:
            vals.append(v)
    return statistics.median(vals) if vals else float("nan")
def total(setting, field):
    return sum(json.load(open(f"{work}/{setting}-{r}.json"))[field] for r in range(1, rounds + 1))
base = {k: med("none", k, "p50_ms") for k in ("keepalive", "paced", "close")}
out = []
out.append("| live traffic | kept-alive p50 / p99 (ms) | paced kept-alive p50 / p99 (ms) | fresh connection p50 / p99 (ms) | failed requests |")
out.append("|---|---|---|---|---|")
for s in settings:
    cells = []
    for k in ("keepalive", "paced", "close"):
        cells.append(f"{med(s, k, 'p50_ms'):.2f} / {med(s, k, 'p99_ms'):.2f}")
    out.append(f"| {names[s]} | " + " | ".join(cells) + f" | {total(s, 'failures')} of {total(s, 'requests')} |")
out.append("")
out.append("| canary share | requests on the canary, 3 runs of 10,000 | clients on the canary, 3 runs of 1,000 | clients that saw both sides |")
out.append("|---|---|---|---|")
for share in (10, 25, 50):
    runs = [json.load(open(f"{work}/split-{share}-{r}.json")) for r in (1, 2, 3)]
    req = ", ".join(f"{100 * d['canary_requests'] / d['requests']:.1f}%" for d in runs)
    cli = ", ".join(f"{100 * d['canary_clients'] / d['clients']:.1f}%" for d in runs)
    both = sum(d["both_sides"] for d in runs)
    out.append(f"| {share}% | {req} | {cli} | {both} of {sum(d['clients'] for d in runs)} |")
print("\n".join(out))
PY
)
engine=$(docker version --format '{{.Server.Version}}' 2>/dev/null || echo unknown)
driver=$(docker info --format '{{.Driver}}' 2>/dev/null || echo unknown)
body="Produced by \`scripts/bench-progressive.sh $ROUNDS $SECS\` on $(date -u +%Y-%m-%d) (Docker Engine $engine,
storage driver $driver, $(nproc) cores, local socket): the demo app, 2 replicas, behind nginx 1.30.
Latency is bgd-load's, from sending a request to reading its whole answer, medians over
$ROUNDS windows of $SECS s per setting (the settings taking turns); the mirror copies GET/HEAD
requests, here all of the load.

$section

Reading it: nginx answers the client without waiting for the mirrored copy, but finishes a
request (and reads the connection's next one) only once the copy is answered too. With a
healthy candidate that costs little; with a candidate slower than live, every kept-alive
client waits for it between requests (the last row): mirror a share, not everything, when
the candidate may be slow, and keep \`warmup.mirror.timeout\` short. The split draws each new
client's bucket at random (nginx's \`split_clients\`, a hash of the connection's serial number) and each client keeps
its side (its cookie): over 1,000 clients the share is the target give or take the spread of
a random draw (one standard deviation is about 1 point at 10%, 1.6 at 50%)."

python3 - "$DOC" "$body" <<'PY'
import sys
path, body = sys.argv[1], sys.argv[2]
text = open(path).read()
start, end = "<!-- progressive:start -->", "<!-- progressive:end -->"
block = f"{start}\n{body}\n{end}"
if start in text and end in text:
    head, rest = text.split(start, 1)
    text = head + block + rest.split(end, 1)[1]
else:
    text = text.rstrip("\n") + "\n\n## Progressive delivery (mirror and canary)\n\n" + block + "\n"
open(path, "w").write(text)
PY
log "wrote $DOC"
