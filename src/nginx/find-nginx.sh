# Finds the nginx binary of this container, wherever the image put it (POSIX sh): on PATH,
# else the program of PID 1 (the master, in an image whose ENTRYPOINT runs nginx itself),
# else the usual install paths. Sets NGINX; fails when there is none.
find_nginx() {
  NGINX=$(command -v nginx 2>/dev/null) && [ -n "$NGINX" ] && return 0
  NGINX=$(readlink /proc/1/exe 2>/dev/null)
  case $NGINX in */nginx) [ -x "$NGINX" ] && return 0 ;; esac
  for NGINX in /usr/sbin/nginx /usr/local/sbin/nginx /usr/local/nginx/sbin/nginx \
    /opt/nginx/sbin/nginx /usr/local/openresty/nginx/sbin/nginx /opt/bitnami/nginx/sbin/nginx; do
    [ -x "$NGINX" ] && return 0
  done
  NGINX=""
  return 1
}
