#!/usr/bin/env bash
# Runs bgd's whole test suite: unit tests, and integration tests that run the real bgd binary
# against the real Docker daemon and a real nginx (images built locally first).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! docker info >/dev/null 2>&1; then
  echo "test.sh: no Docker daemon is reachable (docker info failed). Start one, or set DOCKER_HOST." >&2
  exit 1
fi
for tool in ssh ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "test.sh: $tool is missing: the ssh:// tests need OpenSSH's client (apt-get install openssh-client)" >&2
    exit 1
  }
done
command -v shellcheck >/dev/null 2>&1 || {
  echo "test.sh: shellcheck is missing: the tests check bgd's in-container scripts with it (apt-get install shellcheck)" >&2
  exit 1
}
scripts/build-images.sh demo nginx nginx-old sshd gunicorn registry nginx-layouts
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --no-fail-fast "$@"
else
  echo "test.sh: cargo-nextest not found, using cargo test" >&2
  exec cargo test --no-fail-fast "$@"
fi
