#!/usr/bin/env bash
# Measures bgd against the same Docker daemon reached three ways, in one run, and writes
# docs/benchmarks-remote.md:
#   local   the daemon's unix socket
#   tls     tcp:// with TLS and a client certificate (stunnel in front of the socket, as
#           `dockerd --tlsverify` would be)
#   ssh     ssh:// to an sshd container with the docker CLI (the daemon's socket mounted):
#           every Engine API call goes through ssh and `docker system dial-stdio`
# Each transport deploys its own copy of the demo app; the rounds are interleaved (local,
# tls, ssh, local, ...) so all three meet the same machine. Medians of N deploys (v1 and v2
# alternating, each one a full deploy: start, readiness, switch, 1 s of verification, park)
# and of N rollbacks.
# Usage: scripts/bench-remote.sh [N]   (default 8). Needs openssl, stunnel, ssh, ssh-keygen.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-8}
OUT=docs/benchmarks-remote.md

log() { printf 'bench: %s\n' "$*" >&2; }
ms_now() { date +%s%N | cut -b1-13; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n/a"} else if (NR%2) {print a[(NR+1)/2]} else {print int((a[NR/2]+a[NR/2+1])/2)}}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
for tool in openssl stunnel ssh ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || { log "missing $tool (apt-get install openssl stunnel4 openssh-client)"; exit 1; }
done

scripts/build-images.sh demo nginx sshd
log "building bgd (release)"
cargo build --release --quiet --bins
BGD=$PWD/target/release/bgd
work=$(mktemp -d)
socket=/var/run/docker.sock
case ${DOCKER_HOST:-} in unix://*) socket=${DOCKER_HOST#unix://} ;; esac
apps=(bench-rem-local bench-rem-tls bench-rem-ssh)
tls_pid=""

cleanup() {
  [ -z "$tls_pid" ] || kill "$tls_pid" 2>/dev/null || true
  for app in "${apps[@]}"; do
    ids=$(docker ps -aq --filter "label=bgd.app=$app" 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
    docker rm -f "$app-lb" >/dev/null 2>&1 || true
    docker volume rm -f "$app-lb-bgd" >/dev/null 2>&1 || true
    docker network rm "$app-net" >/dev/null 2>&1 || true
  done
  docker rm -f bench-rem-sshd >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
cleanup
work=$(mktemp -d)

# --- tls: a CA, a server certificate for 127.0.0.1, a client certificate; stunnel in front
tls="$work/tls"; mkdir -p "$tls"
(
  cd "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 1 -extfile server.ext 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout key.pem -out client.csr -subj /CN=bench-client 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > client.ext
  openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cert.pem -days 1 -extfile client.ext 2>/dev/null
)
tls_port=$(free_port)
cat > "$tls/stunnel.conf" <<EOF
foreground = yes
pid =
[docker]
accept = 127.0.0.1:$tls_port
connect = $socket
cert = $tls/server.pem
key = $tls/server.key
CAfile = $tls/ca.pem
requireCert = yes
verifyChain = yes
EOF
stunnel "$tls/stunnel.conf" 2>"$work/stunnel.log" &
tls_pid=$!
sleep 0.5

# --- ssh: the test image's sshd, the daemon's socket mounted, a fresh key
ssh-keygen -q -t ed25519 -N '' -f "$work/id" -C bench
ssh_port=$(free_port)
# on the host's network, so that the "remote host" sees nginx's loopback-published ports where
# a real Docker host would: bgd's probes reach them through ssh (ssh -W), not directly
docker run -d --name bench-rem-sshd --network host -v "$socket:/var/run/docker.sock" \
  -e "AUTHORIZED_KEY=$(cat "$work/id.pub")" bgd-sshd:test /bin/sh -c \
  "mkdir -p /root/.ssh && printf '%s\\n' \"\$AUTHORIZED_KEY\" > /root/.ssh/authorized_keys && chmod 700 /root/.ssh && chmod 600 /root/.ssh/authorized_keys && exec /usr/sbin/sshd -D -e -p $ssh_port -o ListenAddress=127.0.0.1" >/dev/null
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ssh_port" && head -c 4 <&3 | grep -q SSH) 2>/dev/null && break
  sleep 0.2
done
ssh_cmd="ssh -i $work/id -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"

# run TRANSPORT ARGS...: bgd against that transport's daemon, with its app's config
run() {
  local t=$1; shift
  local cfg="$work/bench-rem-$t/bgd.yaml"
  case $t in
    local) env -u DOCKER_CONTEXT DOCKER_HOST="unix://$socket" "$BGD" -f "$cfg" -q "$@" ;;
    tls) env -u DOCKER_CONTEXT DOCKER_HOST="tcp://127.0.0.1:$tls_port" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$tls" "$BGD" -f "$cfg" -q "$@" ;;
    ssh) env -u DOCKER_CONTEXT DOCKER_HOST="ssh://root@127.0.0.1:$ssh_port" BGD_SSH_COMMAND="$ssh_cmd" "$BGD" -f "$cfg" -q "$@" ;;
  esac
}

for t in local tls ssh; do
  app=bench-rem-$t
  mkdir -p "$work/$app"
  cat > "$work/$app/bgd.yaml" <<EOF
app: $app
replicas: 2
container:
  port: 8080
  stop_timeout: 5s
readiness: { path: /health, interval: 100ms, successes: 2, deadline: 20s }
lb:
  image: bgd-nginx:1.30
  publish: ["127.0.0.1:$(free_port):80", "127.0.0.1:$(free_port):8081"]
switch: { verify: 1s, drain: 5s }
EOF
  log "$t: first deploy"
  run "$t" deploy bgd-demo:v1 >/dev/null
  : > "$work/$t.deploy"; : > "$work/$t.rollback"
done

log "$N rounds: a deploy and a rollback per transport, interleaved"
for i in $(seq 1 "$N"); do
  image=bgd-demo:v$(( (i % 2) + 1 ))
  for t in local tls ssh; do
    s=$(ms_now); run "$t" deploy "$image" >/dev/null; e=$(ms_now)
    echo $((e - s)) >> "$work/$t.deploy"
  done
  for t in local tls ssh; do
    s=$(ms_now); run "$t" rollback >/dev/null; e=$(ms_now)
    echo $((e - s)) >> "$work/$t.rollback"
  done
done

declare -A R
for t in local tls ssh; do
  R[deploy_$t]=$(median < "$work/$t.deploy")
  R[rollback_$t]=$(median < "$work/$t.rollback")
done
ratio() { python3 -c "print('%.2fx' % ($1 / $2))"; }

{
  cat <<EOF
# Benchmarks: bgd against a remote Docker host

Produced by \`scripts/bench-remote.sh $N\` on $(date -u +%Y-%m-%d) (Docker Engine
$(docker version --format '{{.Server.Version}}'), $(nproc) cores). One run, the three transports
interleaved round by round on the same host and daemon; medians of $N.

- **local**: the daemon's unix socket.
- **tls**: \`tcp://\` with TLS and a client certificate (stunnel in front of the socket, as
  \`dockerd --tlsverify\` would be).
- **ssh**: \`ssh://\` to an sshd container that has the docker CLI: every Engine API call
  goes through ssh and \`docker system dial-stdio\`, as the docker CLI does it. bgd makes
  one ssh connection per command (a control master) and keeps its sessions open between calls
  (HTTP/1.1 keep-alive), at most 9 at once. Its HTTP probes (readiness,
  confirmation, verification) travel through the same ssh connection (\`ssh -W\` to nginx's
  ports on the host's loopback, \`lb.via: auto\`), as they would from a laptop.

Each transport deploys its own copy of the demo app (2 replicas, readiness every 100 ms,
1 s of post-switch verification); a deploy is the whole pipeline, a rollback the fast one.

| measurement (median ms) | local | tls | ssh | tls / local | ssh / local |
|---|---|---|---|---|---|
| \`bgd deploy\` | ${R[deploy_local]} | ${R[deploy_tls]} | ${R[deploy_ssh]} | $(ratio "${R[deploy_tls]}" "${R[deploy_local]}") | $(ratio "${R[deploy_ssh]}" "${R[deploy_local]}") |
| \`bgd rollback\` | ${R[rollback_local]} | ${R[rollback_tls]} | ${R[rollback_ssh]} | $(ratio "${R[rollback_tls]}" "${R[rollback_local]}") | $(ratio "${R[rollback_ssh]}" "${R[rollback_local]}") |

The ssh host here is on the same machine: the figures show what the transport costs (ssh's
handshake, its sessions, the remote \`docker system dial-stdio\`), not network latency, which
adds a round trip per call on a real link. Most of a rollback's extra time over ssh is the
ssh connection's own start (key exchange, authentication, the remote docker CLI), paid once
per command; a deploy spends seconds on readiness and verification, so the same cost weighs
less.
EOF
} > "$OUT"
log "wrote $OUT"

# the same table in docs/benchmarks.md, in the block bench-switch.sh keeps
block=$(cat <<EOF
<!-- bench-remote:begin -->
## Remote Docker hosts

From \`scripts/bench-remote.sh $N\` on $(date -u +%Y-%m-%d), one run, the transports interleaved;
medians of $N (details in [benchmarks-remote.md](benchmarks-remote.md)):

| measurement (median ms) | local | tcp:// + TLS | ssh:// | tls / local | ssh / local |
|---|---|---|---|---|---|
| \`bgd deploy\` | ${R[deploy_local]} | ${R[deploy_tls]} | ${R[deploy_ssh]} | $(ratio "${R[deploy_tls]}" "${R[deploy_local]}") | $(ratio "${R[deploy_ssh]}" "${R[deploy_local]}") |
| \`bgd rollback\` | ${R[rollback_local]} | ${R[rollback_tls]} | ${R[rollback_ssh]} | $(ratio "${R[rollback_tls]}" "${R[rollback_local]}") | $(ratio "${R[rollback_ssh]}" "${R[rollback_local]}") |
<!-- bench-remote:end -->
EOF
)
BLOCK="$block" python3 - docs/benchmarks.md <<'PY'
import os, re, sys
path = sys.argv[1]
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
block = os.environ["BLOCK"]
pattern = re.compile(r"<!-- bench-remote:begin -->.*?<!-- bench-remote:end -->", re.S)
text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
PY
log "updated the remote block in docs/benchmarks.md"
cat "$OUT"
