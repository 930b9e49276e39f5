#!/usr/bin/env bash
# Builds every image bgd's demo, tests and benchmarks use, locally, with no registry:
#   bgd-demo:v1 .. v4, bgd-demo:unhealthy   the demo app (examples/demo-app), FROM scratch
#   bgd-nginx:1.30                           nginx from Debian sid, laid out like the official image
#   bgd-nginx:1.22                           nginx from Debian 12, same layout (the old-nginx baseline)
#   bgd-sshd:test                            sshd from Debian 12 and the host's docker CLI: a Docker
#                                            host reached over ssh:// (the daemon's socket is mounted)
#   bgd-gunicorn:test                        a Flask app under gunicorn, both from Debian 12: a real
#                                            application server at its defaults
#   bgd-registry:test                        Debian 12's docker-registry (the CNCF distribution
#                                            registry) and htpasswd: a private registry for pulls
#   bgd-nginx:entrypoint, bgd-nginx:elsewhere  bgd-nginx:1.30 with nginx as its ENTRYPOINT, and
#                                            with nginx moved off PATH (/opt/nginx/sbin/nginx)
# An image is rebuilt only when its inputs changed (their hash is stored as a label), so a
# warm machine reuses them and a fresh one builds them.
# Usage: scripts/build-images.sh [demo|nginx|nginx-old|sshd|gunicorn|registry|nginx-layouts]...
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/target/images"
mkdir -p "$cache"
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(demo nginx)

log() { printf 'build-images: %s\n' "$*" >&2; }

# One build at a time per checkout: tests running in parallel all call this script.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.lock"
  flock 9
fi

need() { command -v "$1" >/dev/null 2>&1 || { log "missing tool: $1 ($2)"; exit 1; }; }
need docker "install Docker Engine"

# current_rev IMAGE -> the bgd.build-rev label of IMAGE, or nothing
current_rev() { docker image inspect -f '{{ index .Config.Labels "bgd.build-rev" }}' "$1" 2>/dev/null || true; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# docker build, quiet unless it fails (the legacy builder's deprecation notice is noise here)
dbuild() {
  local out
  if ! out=$(docker build --quiet "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    log "docker build $* failed"
    exit 1
  fi
}

build_demo() {
  need cargo "install a Rust toolchain"
  local src="$root/examples/demo-app"
  local rev
  rev=$(hash_of "$src/Cargo.toml" "$src/src/"*.rs "$src/Dockerfile" "$0")
  local todo=()
  for tag in v1 v2 v3 v4 unhealthy; do
    [ "$(current_rev "bgd-demo:$tag")" = "$rev" ] || todo+=("$tag")
  done
  if [ ${#todo[@]} -eq 0 ]; then log "bgd-demo images are up to date"; return; fi

  log "building the demo app as a static binary"
  # A target dir of its own: the static RUSTFLAGS would otherwise rebuild bgd's dependencies.
  RUSTFLAGS='-C target-feature=+crt-static' cargo build --quiet --release \
    --manifest-path "$root/Cargo.toml" -p demo-app \
    --target x86_64-unknown-linux-gnu --target-dir "$root/target/static"
  local ctx="$cache/demo-ctx"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$root/target/static/x86_64-unknown-linux-gnu/release/demo-app" "$ctx/demo-app"
  cp "$src/Dockerfile" "$ctx/Dockerfile"
  for tag in "${todo[@]}"; do
    local version=$tag health_fail=0
    if [ "$tag" = unhealthy ]; then version=unhealthy; health_fail=1; fi
    dbuild --label "bgd.build-rev=$rev" \
      --build-arg "VERSION=$version" --build-arg "FAIL_HEALTH=$health_fail" \
      -t "bgd-demo:$tag" "$ctx"
    log "built bgd-demo:$tag"
  done
}

# apt_opts SUITE -> apt options for a private sources list and lists directory, so the system's
# apt configuration is never touched.
apt_dir() { echo "$cache/apt-$1"; }
apt_opts() {
  local d; d=$(apt_dir "$1")
  # an empty dpkg status of its own too: the host's installed versions must not steer the choice
  echo "-o Dir::Etc::sourcelist=$d/sources.list -o Dir::Etc::sourceparts=- -o Dir::State::Lists=$d/lists -o Dir::State::status=$d/status -o Dir::Cache::archives=$d/archives -o APT::Get::List-Cleanup=0"
}

debian_mirror() {
  local m
  m=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
      | grep -v security | head -n1 | awk '{print $2}')
  echo "${m:-http://deb.debian.org/debian}"
}

build_nginx() {
  local tag=$1 suite=$2
  local ctx="$root/tests/images/nginx"
  local rev
  rev=$(hash_of "$ctx/Dockerfile" "$ctx/nginx.conf" "$ctx/default.conf" "$0")-$suite
  if [ "$(current_rev "bgd-nginx:$tag")" = "$rev" ]; then log "bgd-nginx:$tag is up to date"; return; fi
  need apt-get "Debian's apt"; need dpkg "Debian's dpkg"

  local out="$cache/nginx-$tag"
  rm -rf "$out" && mkdir -p "$out/root"
  local r="$out/root"
  extract_debs "$suite" "$r" nginx nginx-common libc6 libcrypt1 libpcre2-8-0 zlib1g libzstd1 \
    busybox-static "$( [ "$suite" = bookworm ] && echo libssl3 || echo libssl3t64 )"
  local nginx_bin; nginx_bin=$(cd "$r" && find . -path '*sbin/nginx' -type f | head -n1)
  [ -n "$nginx_bin" ] || { log "no nginx binary in the extracted packages"; exit 1; }
  # Check that every library the binary needs is present, rather than trusting a fixed list.
  check_libs "$r" "/${nginx_bin#./}"
  # busybox for sh and the few tools bgd's in-container scripts use
  mkdir -p "$r/bin.busybox" "$r/usr/bin"
  local bb; bb=$(cd "$r" && find . -path '*bin/busybox' -type f | head -n1)
  for applet in sh cat cp mv rm ls mkdir sleep tr grep sed kill ps head tail wc date echo test \[ cut sort uniq env id wget true false; do
    [ -e "$r/usr/bin/$applet" ] || [ -e "$r/bin/$applet" ] || ln -s "/${bb#./}" "$r/usr/bin/$applet"
  done
  rmdir "$r/bin.busybox"
  # the official image's layout
  rm -rf "$r/etc/nginx/sites-enabled" "$r/etc/nginx/sites-available" "$r/etc/nginx/modules-enabled"
  mkdir -p "$r/etc/nginx/conf.d" "$r/var/log/nginx" "$r/var/lib/nginx" "$r/var/cache/nginx" "$r/run" "$r/tmp" "$r/usr/share/nginx/html"
  chmod 1777 "$r/tmp"
  cp "$ctx/nginx.conf" "$r/etc/nginx/nginx.conf"
  cp "$ctx/default.conf" "$r/etc/nginx/conf.d/default.conf"
  echo '<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>' > "$r/usr/share/nginx/html/index.html"
  echo '<!DOCTYPE html><html><body><h1>An error occurred.</h1></body></html>' > "$r/usr/share/nginx/html/50x.html"
  printf 'root:x:0:0:root:/root:/bin/sh\nnginx:x:101:101:nginx:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n' > "$r/etc/group"
  ln -sf /dev/stdout "$r/var/log/nginx/access.log"
  ln -sf /dev/stderr "$r/var/log/nginx/error.log"
  rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian"
  cp "$ctx/Dockerfile" "$out/Dockerfile"
  dbuild --label "bgd.build-rev=$rev" -t "bgd-nginx:$tag" "$out"
  local v; v=$(docker run --rm "bgd-nginx:$tag" nginx -v 2>&1)
  log "built bgd-nginx:$tag ($v)"
}

# extract_debs SUITE ROOT PACKAGE...: downloads the packages from Debian SUITE (private apt
# lists) and unpacks them into ROOT, with the loader where binaries look for it.
extract_debs() {
  local suite=$1 r=$2; shift 2
  local d; d=$(apt_dir "$suite")
  mkdir -p "$d/lists/partial" "$d/archives/partial" "$d/debs" "$r"
  : > "$d/status"
  echo "deb $(debian_mirror) $suite main" > "$d/sources.list"
  log "apt-get update for Debian $suite (private lists in $d)"
  # shellcheck disable=SC2046
  apt-get $(apt_opts "$suite") -qq update >/dev/null
  (
    cd "$d/debs"
    rm -f ./*.deb
    # shellcheck disable=SC2046
    apt-get $(apt_opts "$suite") -qq download "$@" || { log "apt-get download from Debian $suite failed"; exit 1; }
    for deb in ./*.deb; do dpkg -x "$deb" "$r"; done
  )
  for l in lib lib64 bin sbin; do
    if [ ! -e "$r/$l" ] && [ -d "$r/usr/$l" ]; then ln -s "usr/$l" "$r/$l"; fi
  done
  mkdir -p "$r/lib64"
  local ld; ld=$(cd "$r" && find . -name 'ld-linux-x86-64.so.2' | head -n1)
  [ -n "$ld" ] || { log "no dynamic loader in the extracted packages"; exit 1; }
  [ -e "$r/lib64/ld-linux-x86-64.so.2" ] || ln -s "/${ld#./}" "$r/lib64/ld-linux-x86-64.so.2"
}

# check_libs ROOT BINARY: every library BINARY (a path inside ROOT) needs is in ROOT (a first
# check: the loader also looks in the host's directories, so the image is tried as well)
check_libs() {
  local r=$1 bin=$2
  local ld; ld=$(cd "$r" && find . -name 'ld-linux-x86-64.so.2' -type f | head -n1)
  local libdirs="$r/usr/lib/x86_64-linux-gnu:$r/lib/x86_64-linux-gnu"
  if "$r/${ld#./}" --library-path "$libdirs" --list "$r$bin" | grep -q 'not found'; then
    "$r/${ld#./}" --library-path "$libdirs" --list "$r$bin" >&2
    log "$bin needs a library the list above lacks; add its package to build-images.sh"
    exit 1
  fi
}

build_sshd() {
  local ctx="$root/tests/images/sshd"
  local docker_cli; docker_cli=$(command -v docker)
  local rev
  rev=$(hash_of "$ctx/Dockerfile" "$ctx/sshd_config" "$0" "$docker_cli")
  if [ "$(current_rev bgd-sshd:test)" = "$rev" ]; then log "bgd-sshd:test is up to date"; return; fi
  need apt-get "Debian's apt"; need dpkg "Debian's dpkg"; need ssh-keygen "OpenSSH's ssh-keygen"
  local out="$cache/sshd"
  rm -rf "$out" && mkdir -p "$out/root"
  local r="$out/root"
  extract_debs bookworm "$r" openssh-server libc6 libcrypt1 libwrap0 libaudit1 libcap-ng0 \
    libpam0g libsystemd0 libselinux1 libgssapi-krb5-2 libkrb5-3 libcom-err2 libssl3 zlib1g \
    libcap2 libgcrypt20 liblzma5 libzstd1 liblz4-1 libpcre2-8-0 libk5crypto3 libkrb5support0 \
    libkeyutils1 libgpg-error0 libnsl2 libtirpc3 busybox-static
  check_libs "$r" /usr/sbin/sshd
  mkdir -p "$r/usr/bin"
  cp "$docker_cli" "$r/usr/bin/docker"
  check_libs "$r" /usr/bin/docker
  local bb; bb=$(cd "$r" && find . -path '*bin/busybox' -type f | head -n1)
  mkdir -p "$r/bin"
  for applet in sh cat mkdir chmod printf ls; do
    [ -e "$r/usr/bin/$applet" ] || [ -e "$r/bin/$applet" ] || ln -s "/${bb#./}" "$r/bin/$applet"
  done
  mkdir -p "$r/etc/ssh" "$r/run/sshd" "$r/root" "$r/tmp"
  chmod 755 "$r/run/sshd"; chmod 700 "$r/root"; chmod 1777 "$r/tmp"
  cp "$ctx/sshd_config" "$r/etc/ssh/sshd_config"
  ssh-keygen -q -t ed25519 -N '' -f "$r/etc/ssh/ssh_host_ed25519_key" -C bgd-test-host
  printf 'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
  rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian"
  cp "$ctx/Dockerfile" "$out/Dockerfile"
  dbuild --label "bgd.build-rev=$rev" -t bgd-sshd:test "$out"
  # sshd -t checks its config and keys; both binaries must start inside the image
  local v
  if ! v=$(docker run --rm bgd-sshd:test sh -c '/usr/sbin/sshd -t && docker --version' 2>&1); then
    printf '%s\n' "$v" >&2
    docker rmi bgd-sshd:test >/dev/null 2>&1 || true
    log "bgd-sshd:test does not run; see above"
    exit 1
  fi
  log "built bgd-sshd:test ($v)"
}

build_gunicorn() {
  local ctx="$root/tests/images/gunicorn"
  local rev
  rev=$(hash_of "$ctx/Dockerfile" "$ctx/app.py" "$0")
  if [ "$(current_rev bgd-gunicorn:test)" = "$rev" ]; then log "bgd-gunicorn:test is up to date"; return; fi
  need apt-get "Debian's apt"; need dpkg "Debian's dpkg"
  local out="$cache/gunicorn"
  rm -rf "$out" && mkdir -p "$out/root"
  local r="$out/root"
  extract_debs bookworm "$r" gunicorn python3-gunicorn python3-flask python3-werkzeug \
    python3-jinja2 python3-markupsafe python3-itsdangerous python3-click python3-blinker \
    python3-pkg-resources python3-importlib-metadata python3-zipp python3-more-itertools \
    python3-typing-extensions python3 python3-minimal python3.11 python3.11-minimal \
    libpython3-stdlib libpython3.11-minimal libpython3.11-stdlib media-types \
    libc6 libexpat1 zlib1g libffi8 libbz2-1.0 liblzma5 libssl3 libcrypt1 libuuid1 \
    libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libdb5.3 libgdbm6 libnsl2 libtirpc3 \
    libtirpc-common libzstd1 busybox-static
  check_libs "$r" /usr/bin/python3.11
  local bb; bb=$(cd "$r" && find . -path '*bin/busybox' -type f | head -n1)
  mkdir -p "$r/usr/bin"
  for applet in sh cat ls; do
    [ -e "$r/usr/bin/$applet" ] || [ -e "$r/bin/$applet" ] || ln -s "/${bb#./}" "$r/usr/bin/$applet"
  done
  mkdir -p "$r/app" "$r/tmp"
  chmod 1777 "$r/tmp"
  cp "$ctx/app.py" "$r/app/app.py"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
  rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian"
  cp "$ctx/Dockerfile" "$out/Dockerfile"
  dbuild --label "bgd.build-rev=$rev" -t bgd-gunicorn:test "$out"
  local v
  if ! v=$(docker run --rm bgd-gunicorn:test sh -c 'gunicorn --version && python3 -c "import flask, app"' 2>&1); then
    printf '%s\n' "$v" >&2
    docker rmi bgd-gunicorn:test >/dev/null 2>&1 || true
    log "bgd-gunicorn:test does not run; see above"
    exit 1
  fi
  log "built bgd-gunicorn:test ($v)"
}

build_registry() {
  local ctx="$root/tests/images/registry"
  local rev
  rev=$(hash_of "$ctx/Dockerfile" "$ctx/config.yml" "$0")
  if [ "$(current_rev bgd-registry:test)" = "$rev" ]; then log "bgd-registry:test is up to date"; return; fi
  need apt-get "Debian's apt"; need dpkg "Debian's dpkg"
  local out="$cache/registry"
  rm -rf "$out" && mkdir -p "$out/root"
  local r="$out/root"
  extract_debs bookworm "$r" docker-registry apache2-utils libapr1 libaprutil1 libc6 libcrypt1 \
    libssl3 libuuid1 libexpat1 libdb5.3 libgdbm6 busybox-static
  check_libs "$r" /usr/bin/docker-registry
  check_libs "$r" /usr/bin/htpasswd
  local bb; bb=$(cd "$r" && find . -path '*bin/busybox' -type f | head -n1)
  mkdir -p "$r/usr/bin"
  for applet in sh cat ls; do
    [ -e "$r/usr/bin/$applet" ] || [ -e "$r/bin/$applet" ] || ln -s "/${bb#./}" "$r/usr/bin/$applet"
  done
  mkdir -p "$r/etc/docker/registry" "$r/var/lib/docker-registry" "$r/auth" "$r/tmp"
  chmod 1777 "$r/tmp"
  cp "$ctx/config.yml" "$r/etc/docker/registry/config.yml"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$r/etc/group"
  rm -rf "$r/usr/share/doc" "$r/usr/share/man" "$r/usr/share/locale" "$r/usr/share/lintian"
  cp "$ctx/Dockerfile" "$out/Dockerfile"
  dbuild --label "bgd.build-rev=$rev" -t bgd-registry:test "$out"
  local v
  if ! v=$(docker run --rm bgd-registry:test sh -c 'docker-registry --version && htpasswd -Bbn u p >/dev/null && echo htpasswd ok' 2>&1); then
    printf '%s\n' "$v" >&2
    docker rmi bgd-registry:test >/dev/null 2>&1 || true
    log "bgd-registry:test does not run; see above"
    exit 1
  fi
  log "built bgd-registry:test ($(echo "$v" | tr '\n' ' '))"
}

# Other layouts of nginx images, from bgd-nginx:1.30: nginx as the ENTRYPOINT (a common
# hand-built style), and nginx at another path, not on PATH, started by its full path.
build_nginx_layouts() {
  build_nginx 1.30 sid
  local base; base=$(docker image inspect -f '{{.Id}}' bgd-nginx:1.30)
  local rev; rev=$(printf '%s' "$base" | cat - "$0" | sha256sum | cut -c1-16)
  local out="$cache/nginx-layouts"
  rm -rf "$out" && mkdir -p "$out/entrypoint" "$out/elsewhere"
  if [ "$(current_rev bgd-nginx:entrypoint)" != "$rev" ]; then
    printf '%s\n' 'FROM bgd-nginx:1.30' 'ENTRYPOINT ["nginx", "-g", "daemon off;"]' 'CMD []' \
      > "$out/entrypoint/Dockerfile"
    dbuild --label "bgd.build-rev=$rev" -t bgd-nginx:entrypoint "$out/entrypoint"
    log "built bgd-nginx:entrypoint"
  else
    log "bgd-nginx:entrypoint is up to date"
  fi
  if [ "$(current_rev bgd-nginx:elsewhere)" != "$rev" ]; then
    printf '%s\n' 'FROM bgd-nginx:1.30' \
      'RUN mkdir -p /opt/nginx/sbin && mv /usr/sbin/nginx /opt/nginx/sbin/nginx' \
      'ENTRYPOINT ["/opt/nginx/sbin/nginx", "-g", "daemon off;"]' 'CMD []' \
      > "$out/elsewhere/Dockerfile"
    dbuild --label "bgd.build-rev=$rev" -t bgd-nginx:elsewhere "$out/elsewhere"
    if docker run --rm --entrypoint sh bgd-nginx:elsewhere -c 'command -v nginx' >/dev/null 2>&1; then
      log "bgd-nginx:elsewhere still has nginx on PATH"; exit 1
    fi
    log "built bgd-nginx:elsewhere"
  else
    log "bgd-nginx:elsewhere is up to date"
  fi
}

for w in "${what[@]}"; do
  case "$w" in
    demo) build_demo ;;
    nginx) build_nginx 1.30 sid ;;
    nginx-old) build_nginx 1.22 bookworm ;;
    sshd) build_sshd ;;
    gunicorn) build_gunicorn ;;
    registry) build_registry ;;
    nginx-layouts) build_nginx_layouts ;;
    *) log "unknown image set: $w (demo, nginx, nginx-old, sshd, gunicorn, registry, nginx-layouts)"; exit 2 ;;
  esac
done
