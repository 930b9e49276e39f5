#!/usr/bin/env bash
# Runs bgd's whole test suite: unit tests, and integration tests that run the real bgd binary
# against the real Docker daemon and a real nginx (images built locally first).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: no Docker daemon is reachable (docker info failed). Start one, or set DOCKER_HOST." >&2
  exit 1
fi
scripts/build-images.sh demo nginx nginx-old
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  exec cargo test --no-fail-fast "$@"
fi
