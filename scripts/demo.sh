#!/usr/bin/env bash
# A real demo on this machine's Docker: builds the demo app and nginx images locally, deploys
# v1, deploys v2 beside it, rolls back, and shows what the live listener served at each step.
# Uses examples/quickstart/bgd.yaml (live listener http://127.0.0.1:18000).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "demo.sh: no Docker daemon is reachable (docker info failed). Start one, or set DOCKER_HOST." >&2
  exit 1
fi
scripts/build-images.sh demo nginx
cargo build --quiet --bin bgd
bgd() { ./target/debug/bgd -f examples/quickstart/bgd.yaml "$@"; }
served() { printf '  live listener serves: %s\n' "$(curl -s http://127.0.0.1:18000/)"; }

# start from a clean slate: remove what an earlier demo left
docker rm -f $(docker ps -aq --filter label=bgd.app=quickstart) quickstart-lb >/dev/null 2>&1 || true
docker volume rm -f quickstart-lb-bgd >/dev/null 2>&1 || true   # bgd's record of the app

echo "== bgd deploy bgd-demo:v1"; bgd deploy bgd-demo:v1; served
echo "== bgd deploy bgd-demo:v2"; bgd deploy bgd-demo:v2; served
echo "== bgd status"; bgd status
echo "== bgd rollback"; bgd rollback; served
echo "== bgd history"; bgd history
echo
echo "The demo is still running. Look around with: ./target/debug/bgd -f examples/quickstart/bgd.yaml status"
echo "Remove it with: docker rm -f \$(docker ps -aq --filter label=bgd.app=quickstart) quickstart-lb; docker volume rm quickstart-lb-bgd; docker network rm quickstart-net"
