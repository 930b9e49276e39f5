# Finds this container's nginx, wherever the image put it (POSIX sh): nginx on PATH, else the
# binary of the running master (found by its process title), else the usual install paths;
# and the -c/-p the master was started with, so that `nginx -t` reads the files the master
# reads. Sets NGINX, nginx_master (its pid, or empty), nginx_c and nginx_p; fails when there
# is no nginx at all.
find_nginx() {
  NGINX="" nginx_master="" nginx_c="" nginx_p=""
  for p in /proc/[0-9]*; do
    t=""
    { IFS= read -r t < "$p/cmdline"; } 2>/dev/null
    case $t in "nginx: master process "*) ;; *) continue ;; esac
    nginx_master=${p#/proc/}
    # the title keeps the command line, space-joined: "nginx: master process BIN ARGS"
    # shellcheck disable=SC2086 # split on purpose: paths with spaces are not supported
    set -- ${t#nginx: master process }
    while [ $# -gt 0 ]; do
      case $1 in
        -c) nginx_c=${2:-}; shift ;;
        -p) nginx_p=${2:-}; shift ;;
      esac
      shift
    done
    break
  done
  NGINX=$(command -v nginx 2>/dev/null) && [ -n "$NGINX" ] && return 0
  if [ -n "$nginx_master" ]; then
    NGINX=$(readlink "/proc/$nginx_master/exe" 2>/dev/null) || NGINX=""
    case $NGINX in */nginx) [ -x "$NGINX" ] && return 0 ;; esac
  fi
  for NGINX in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx \
    /opt/nginx/sbin/nginx /usr/local/openresty/nginx/sbin/nginx /opt/bitnami/nginx/sbin/nginx; do
    [ -x "$NGINX" ] && return 0
  done
  NGINX=""
  return 1
}

# run_nginx ARGS...: nginx with the master's -c/-p, then ARGS
run_nginx() {
  "$NGINX" ${nginx_c:+-c "$nginx_c"} ${nginx_p:+-p "$nginx_p"} "$@"
}

# reload_nginx: `nginx -s reload`; when that cannot find the master's pid (an image that
# moved the pid file with -g), the same SIGHUP sent to the master found by its title
reload_nginx() {
  reload_out=$(run_nginx -s reload 2>&1) && return 0
  case $reload_out in
    *pid* | *PID*)
      if [ -n "$nginx_master" ] && kill -HUP "$nginx_master" 2>/dev/null; then return 0; fi
      ;;
  esac
  echo "$reload_out"
  return 1
}
