# bgd's in-container install script (POSIX sh; busybox is enough). It runs as ONE exec so a
# switch costs one round trip, and so it finishes even if bgd dies half way through.
#   $1 app  $2 conf.d dir  $3 bgd's dir for the app  $4 ms to wait for the new workers
#   $5 ms to drain  $6 the new config  $7 state to record on success ("" = none)
#   $8 history line to append on success ("" = none)  $9 history lines kept
#   $10 the deploy lock's token the caller holds ("" = none)
#   $11 a lock holder to take the lock as for this exec alone ("" = none)
# Layout: "$2/bgd-$1.conf" is a one-line stub including "$3/active.conf", the config itself.
# Old workers still running after the drain are stopped with SIGTERM.
# Prints one status line last; exit codes:
#   0 switched; 10 nginx -t failed (restored); 11 reload refused (restored);
#   12 new config not applied in time (restored); 20 nginx not running; 21 cannot write;
#   30 the lock is held by another run (its holder printed); 31 the caller's lock is gone
set -u
app=$1 conf_dir=$2 dir=$3 switch_ms=$4 drain_ms=$5 config=$6 state=$7 entry=$8 keep=$9
lock_token=${10} hold_once=${11}
lockdir="$dir/lock"
stub="$conf_dir/bgd-$app.conf"
active="$dir/active.conf"
stub_text="include $active;"

# pids of nginx workers that still accept connections
accepting() {
  for p in /proc/[0-9]*; do
    c=$(tr '\0' ' ' < "$p/cmdline" 2>/dev/null) || continue
    case "$c" in
      *"shutting down"*) ;;
      "nginx: worker process"*) echo "${p#/proc/}" ;;
    esac
  done
}
# of the pids given, those still accepting / still alive
still_accepting() {
  for p in $1; do
    c=$(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null) || continue
    case "$c" in *"shutting down"*) ;; "nginx: worker process"*) echo "$p" ;; esac
  done
}
alive() { for p in $1; do [ -d "/proc/$p" ] && echo "$p"; done; }

# put FILE TEXT: write through a temporary name and rename, so readers see old or new, whole
put() { printf '%s' "$2" > "$1.bgd-tmp" && mv -f "$1.bgd-tmp" "$1"; }
restore() {
  if [ -f "$dir/prev.conf" ]; then mv -f "$dir/prev.conf" "$active"; else rm -f "$active"; fi
  if [ -f "$dir/prev.stub" ]; then mv -f "$dir/prev.stub" "$stub"; else rm -f "$stub"; fi
}

mkdir -p "$dir" || { echo "BGD_WRITE_FAILED cannot create $dir"; exit 21; }
# The deploy lock, checked before anything changes.
if [ -n "$hold_once" ]; then
  if ! mkdir "$lockdir" 2>/dev/null; then
    cat "$lockdir/holder.json" 2>/dev/null; echo
    echo "BGD_LOCKED"
    exit 30
  fi
  printf '%s' "$hold_once" > "$lockdir/holder.json"
  trap 'rm -rf "$lockdir"' EXIT
elif [ -n "$lock_token" ]; then
  if ! grep -qF "$lock_token" "$lockdir/holder.json" 2>/dev/null; then
    echo "BGD_LOCK_LOST the deploy lock was released or taken over by another run"
    exit 31
  fi
fi
old=$(accepting)
if [ -z "$old" ]; then echo "BGD_NOT_RUNNING no nginx worker process found"; exit 20; fi
rm -f "$dir/prev.conf" "$dir/prev.stub"
{ [ ! -f "$active" ] || cp "$active" "$dir/prev.conf"; } || exit 21
{ [ ! -f "$stub" ] || cp "$stub" "$dir/prev.stub"; } || exit 21
put "$active" "$config" || { restore; echo "BGD_WRITE_FAILED cannot write $active"; exit 21; }
if [ "$(cat "$stub" 2>/dev/null)" != "$stub_text" ]; then
  put "$stub" "$stub_text" || { restore; echo "BGD_WRITE_FAILED cannot write $stub"; exit 21; }
fi
if ! out=$(nginx -t 2>&1); then
  restore
  echo "$out"
  echo "BGD_INVALID nginx -t rejected the new config"
  exit 10
fi
if ! out=$(nginx -s reload 2>&1); then
  restore
  echo "$out"
  echo "BGD_RELOAD_FAILED nginx -s reload failed"
  exit 11
fi

# The master applies the config after `-s reload` returns: wait for workers that were not
# there before. None within the bound means the master kept the old config (it only logs why).
i=0
limit=$((switch_ms / 10))
while :; do
  new=""
  for p in $(accepting); do case " $(echo $old) " in *" $p "*) ;; *) new="$new $p" ;; esac; done
  [ -n "$new" ] && break
  i=$((i + 1))
  if [ "$i" -ge "$limit" ]; then
    restore
    nginx -s reload >/dev/null 2>&1
    echo "BGD_NOT_APPLIED nginx kept its old config (see its error log)"
    exit 12
  fi
  sleep 0.01
done
# The switch is in effect: record it before anything else can interrupt us.
[ -z "$state" ] || put "$dir/state.json" "$state"
if [ -n "$entry" ]; then
  { [ ! -f "$dir/history.jsonl" ] || tail -n "$((keep - 1))" "$dir/history.jsonl"; printf '%s\n' "$entry"; } > "$dir/history.jsonl.bgd-tmp" \
    && mv -f "$dir/history.jsonl.bgd-tmp" "$dir/history.jsonl"
fi
# Old workers keep accepting for ~100 ms after the new ones start; until they stop, a request
# may still see the old routing.
while [ -n "$(still_accepting "$old")" ] && [ "$i" -lt "$limit" ]; do
  i=$((i + 1))
  sleep 0.01
done
# Drain: the old workers finish their requests in flight and exit.
j=0
dlimit=$((drain_ms / 10))
while [ -n "$(alive "$old")" ] && [ "$j" -lt "$dlimit" ]; do
  j=$((j + 1))
  sleep 0.01
done
# Past switch.drain, old workers are stopped: bgd does not always own nginx's main config, so
# worker_shutdown_timeout may be unset, and an old worker holding a WebSocket would live forever.
left=$(alive "$old")
killed=0
if [ -n "$left" ]; then
  for p in $left; do kill -TERM "$p" 2>/dev/null && killed=$((killed + 1)); done
fi
echo "BGD_OK old_workers_killed=$killed"
