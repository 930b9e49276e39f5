# bgd's in-container install script (POSIX sh: busybox ash and dash are enough). ONE exec
# validates, activates, reloads and drains, so a switch costs one round trip, and it finishes
# even if bgd dies half way through. It also writes bgd's record (the state and one history
# line): with a config, once the config serves, in the same exec; without one (record mode),
# alone. Every write is a temporary file renamed into place, under the deploy lock.
#
# Inputs, all named (--key value):
#   --app NAME           the app: the stub is CONF_DIR/bgd-NAME.conf, the files ROOT/NAME/
#   --conf-dir DIR       nginx's conf.d, included by nginx.conf
#   --root DIR           bgd's directory (the install guard lives there when the container
#                        has no /dev/shm)
#   --config TEXT        the new config                                [none: record only]
#   --handover-ms N      longest wait for nginx's new workers after the reload   [5000]
#   --drain-ms N         longest wait for the old workers to finish their requests [30000]
#   --guard-ms N         least wait for another install to finish (longer when the other
#                        install said it may take longer)                        [60000]
#   --state JSON         state to record once the new config serves              [none]
#   --history LINE       history line to append then                             [none]
#   --history-run ID     the run that wrote LINE: an earlier line of this run (a switch,
#                        then its switch back) is replaced, not added to         [none]
#   --history-keep N     history lines kept; lines bgd cannot read are kept too  [1000]
#   --record-schema N    the record schema the caller writes: refuse to replace a state.json
#                        that is not whole or is of a newer schema (nothing changes) [none]
#   --lock-token TOKEN   the deploy lock the caller holds: refuse if it is gone  [none]
#   --lock-once JSON     take the deploy lock as this holder for this exec only  [none]
#   --undo-state JSON    flip mode with --await-history: the state to record if the caller
#                        answers `BGD_UNDO` (the flag is then put back)
#   --undo-history JSON  ... and the history line
#   --release-lock 1     record mode, with --lock-token: release the lock once the record
#                        is written (`recorded unlocked=1`), if it is still the caller's
#   --flip PATH          flip mode (no --config): raise (--flip-to on: create) or lower (off:
#                        remove) the rollback flag PATH, which the active config routes by,
#                        then record; no reload                                  [none]
#   --flip-to on|off     what the flag becomes; it must be the other way now
#   --unmark 1           flip mode, --flip-to off: also remove the flag's marker (ROOT/APP/
#                        promoted-GENERATION, which raising the flag creates): the caller
#                        puts back a raise it could not confirm                 [none]
#   --await-history 1    flip mode: once the flag moved and the record is written, print
#                        `BGD_AWAIT` and read one line from stdin (15 s at most): a history
#                        line that replaces --history's, while the lock is still this exec's
#                        (an empty line, no line, or the end of input, as when bgd dies:
#                        --history's stays), or `BGD_UNDO`: put the flag back (--undo-*)
#
# Output: detail lines (nginx's own messages; `BGD_HOLDER <json>`), then one last line
#   BGD_OUTCOME <outcome> [key=value ...]
# applied stopped=N recorded=1|0
#                     the new config serves and no old worker remains; N old workers were
#                     still busy after --drain-ms and were stopped; recorded=0: the state or
#                     history asked for could not be written
# recorded [unlocked=1]
#                     record mode: the state and history line are written; unlocked=1: and
#                     the lock released (--release-lock)
# flipped recorded=1|0
#                     flip mode: the flag is as asked, so live traffic follows it at every
#                     request from now on; recorded=0: the record could not be written
# flipped-back recorded=1|0
#                     flip mode: the caller answered `BGD_UNDO`; the flag is as it was before
#                     this exec, and the --undo-* record written (recorded=0: it could not be)
# flip-stale          flip mode: the active config does not route by that flag, or the flag
#                     is already as asked (another run changed the routing since the caller
#                     looked); nothing changed
# record-untrusted    the record there cannot be read by the caller (torn, or newer); nothing
#                     changed
# record-failed       record mode: they could not be written
# invalid             nginx -t rejected the config; the previous config is active
# reload-refused      nginx -s reload failed; the previous config is active
# not-applied         no new workers within --handover-ms: nginx kept its old config; the
#                     previous files are restored and nginx reloaded again
# not-running         no nginx worker process is running
# no-nginx            no nginx binary in the container (find_nginx, from find-nginx.sh)
# write-failed        a file could not be written; the previous config is active
# busy                another install held the guard longer than --guard-ms and than it
#                     said it would
# locked              --lock-once: another run holds the deploy lock (BGD_HOLDER first)
# lock-lost           --lock-token: the caller's lock was released or taken over
# bad-input           an unknown option or a bad value
# Times come from /proc/uptime (monotonic). The loops read /proc with shell builtins: the
# only programs they start are `sleep`, and nginx itself.
set -u

finish() {
  echo "BGD_OUTCOME $*"
  case $1 in applied | recorded | flipped | flipped-back) exit 0 ;; esac
  exit 1
}

app="" conf_dir="" root="" config="" have_config=0
handover_ms=5000 drain_ms=30000 guard_ms=60000
state="" history="" history_run="" history_keep=1000 lock_token="" lock_once=""
record_schema="" flip="" flip_to="" await_history="" release_lock="" undo_state="" undo_history=""
unmark=""
while [ $# -gt 0 ]; do
  if [ $# -lt 2 ]; then echo "$1 needs a value"; finish bad-input; fi
  case $1 in
    --app) app=$2 ;;
    --conf-dir) conf_dir=$2 ;;
    --root) root=$2 ;;
    --config) config=$2; have_config=1 ;;
    --handover-ms) handover_ms=$2 ;;
    --drain-ms) drain_ms=$2 ;;
    --guard-ms) guard_ms=$2 ;;
    --state) state=$2 ;;
    --history) history=$2 ;;
    --history-run) history_run=$2 ;;
    --history-keep) history_keep=$2 ;;
    --record-schema) record_schema=$2 ;;
    --lock-token) lock_token=$2 ;;
    --release-lock) release_lock=$2 ;;
    --undo-state) undo_state=$2 ;;
    --undo-history) undo_history=$2 ;;
    --lock-once) lock_once=$2 ;;
    --flip) flip=$2 ;;
    --flip-to) flip_to=$2 ;;
    --unmark) unmark=$2 ;;
    --await-history) await_history=$2 ;;
    *) echo "unknown option $1"; finish bad-input ;;
  esac
  shift 2
done
for n in "$handover_ms" "$drain_ms" "$guard_ms" "$history_keep" ${record_schema:+"$record_schema"}; do
  # digits only, no leading zero: $((...)) would read 010 as octal
  case $n in '' | *[!0-9]* | 0?*) echo "not a number of milliseconds: $n"; finish bad-input ;; esac
done
if [ -z "$app" ] || [ -z "$conf_dir" ] || [ -z "$root" ]; then
  echo "--app, --conf-dir and --root are required"
  finish bad-input
fi

if [ -n "$flip" ]; then
  if [ "$have_config" = 1 ]; then echo "--flip takes no --config"; finish bad-input; fi
  case $flip_to in on | off) ;; *) echo "--flip-to must be on or off"; finish bad-input ;; esac
  case ${flip#"$root/$app/flip-"} in
    "$flip" | '' | *[!0-9]*) echo "--flip must be $root/$app/flip-GENERATION"; finish bad-input ;;
  esac
fi
dir="$root/$app"
lockdir="$dir/lock"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  guard=/dev/shm/bgd-install-guard
else
  guard="$root/.install-guard"
fi
stub="$conf_dir/bgd-$app.conf"
active="$dir/active.conf"
stub_text="include $active;"

# now: milliseconds since boot, in $now_ms (no fork)
now() {
  IFS=' .' read -r up_s up_cs _ < /proc/uptime
  up_cs=${up_cs#0}
  now_ms=$((up_s * 1000 + ${up_cs:-0} * 10))
}
# title_of PID: its process title in $title ("" when it is gone)
title_of() {
  title=""
  { IFS= read -r title < "/proc/$1/cmdline"; } 2>/dev/null
}
# ident_of PID: "pid start-time" in $ident ("" when it is gone): a pid alone may be reused
ident_of() {
  ident="" stat=""
  { read -r stat < "/proc/$1/stat"; } 2>/dev/null
  [ -n "$stat" ] || return 0
  ident_pid=$1
  # shellcheck disable=SC2086 # the fields after "(command) " are split on purpose
  set -- ${stat##*) }
  [ $# -ge 20 ] || return 0
  shift 19
  ident="$ident_pid $1"
}
# accepting_of PIDS: those of PIDS that are nginx workers still accepting, in $accepting
accepting_of() {
  accepting=""
  for pid in $1; do
    title_of "$pid"
    case $title in
      *"shutting down"*) ;;
      "nginx: worker process"*) accepting="$accepting $pid" ;;
    esac
  done
}
# every_pid: all processes, in $every
every_pid() {
  every=""
  for p in /proc/[0-9]*; do every="$every ${p#/proc/}"; done
}
# alive_of PIDS: those of PIDS still running, in $alive
alive_of() {
  alive=""
  for pid in $1; do [ ! -d "/proc/$pid" ] || alive="$alive $pid"; done
}
# wait_until_gone PIDS MS: waits up to MS for them to exit; $alive holds the rest
wait_until_gone() {
  now
  until_ms=$((now_ms + $2))
  alive_of "$1"
  while [ -n "$alive" ] && [ "$now_ms" -lt "$until_ms" ]; do
    sleep 0.01
    alive_of "$alive"
    now
  done
}

# put FILE TEXT: write through a temporary name and rename, so readers see old or new, whole
put() { printf '%s' "$2" > "$1.bgd-tmp" && mv -f "$1.bgd-tmp" "$1"; }
# record_trusted: the state.json there (if any) is whole (one JSON object) and of a schema
# no newer than --record-schema: what the caller may replace
record_trusted() {
  [ -n "$record_schema" ] && [ -n "$state" ] && [ -f "$dir/state.json" ] || return 0
  body=$(cat "$dir/state.json") || return 1
  # the shell drops trailing newlines; leading or trailing blanks are not bgd's
  case $body in "{"*"}") ;; *) echo "state.json is not a whole record"; return 1 ;; esac
  found=$(printf '%s' "$body" | grep -o '"schema":[0-9]*' | head -n 1 | cut -d: -f2)
  if [ -n "$found" ] && [ "$found" -gt "$record_schema" ]; then
    echo "state.json has schema $found, newer than $record_schema"
    return 1
  fi
}
# record: writes the state and the history line asked for; fails when either cannot be
# written. The history is only appended to (an earlier line of the same run replaced).
record() {
  if [ -n "$state" ]; then put "$dir/state.json" "$state" || return 1; fi
  [ -n "$history" ] || return 0
  history_tmp="$dir/history.jsonl.bgd-tmp"
  kept="$dir/history.jsonl.bgd-kept"
  if [ -f "$dir/history.jsonl" ]; then
    if [ -n "$history_run" ]; then
      # -a where grep has it: GNU grep prints nothing of a file with a NUL byte (a torn
      # write) otherwise, and the history would be lost
      grep ${grep_text:+"$grep_text"} -vF "\"run\":\"$history_run\"" "$dir/history.jsonl" > "$kept"
      [ $? -le 1 ] || return 1
    else
      cp "$dir/history.jsonl" "$kept" || return 1
    fi
    { tail -n "$((history_keep - 1))" "$kept" && printf '%s\n' "$history"; } > "$history_tmp" || return 1
    rm -f "$kept"
  else
    printf '%s\n' "$history" > "$history_tmp" || return 1
  fi
  mv -f "$history_tmp" "$dir/history.jsonl"
}
grep_text=""
if printf 'x\n' | grep -a x >/dev/null 2>&1; then grep_text=-a; fi
restore() {
  if [ -f "$dir/prev.conf" ]; then mv -f "$dir/prev.conf" "$active"; else rm -f "$active"; fi
  if [ -f "$dir/prev.stub" ]; then mv -f "$dir/prev.stub" "$stub"; else rm -f "$stub"; fi
}

# The guard: one install at a time in this nginx, whatever the app (a reload affects them
# all). It is a symlink whose target names its owner, "pid start-time until-ms", so it is
# made and named in one atomic step; in /dev/shm (a tmpfs) a container restart clears it.
# A live owner is waited for as long as it said it may take (another app's drain may be
# longer than ours); a guard whose owner is gone is taken over, under a second symlink, so
# that of two takers one wins and a fresh guard is never removed.
# alive_owner OWNER: its process (pid and start time) still runs
alive_owner() {
  ident_of "${1%% *}"
  owner_rest=${1#* }
  [ -n "$ident" ] && [ "$ident" = "${1%% *} ${owner_rest%% *}" ]
}
# take_over LINK OWNER: removes LINK if it still names OWNER (a gone owner)
take_over() {
  mutex="$1.takeover"
  if ! ln -s "$mine" "$mutex" 2>/dev/null; then
    held=$(readlink "$mutex" 2>/dev/null) || held=""
    if [ -n "$held" ] && ! alive_owner "$held"; then rm -f "$mutex"; fi
    sleep 0.01
    return 0
  fi
  if [ "$(readlink "$1" 2>/dev/null)" = "$2" ]; then rm -f "$1"; fi
  rm -f "$mutex"
}
take_guard() {
  now
  give_up=$((now_ms + guard_ms))
  ident_of $$
  mine="$ident $((now_ms + handover_ms * 2 + drain_ms + 2000))"
  until ln -s "$mine" "$guard" 2>/dev/null; do
    owner=$(readlink "$guard" 2>/dev/null) || owner=""
    if [ -n "$owner" ] && ! alive_owner "$owner"; then
      take_over "$guard" "$owner"
      continue
    fi
    now
    owner_until=${owner##* }
    case $owner_until in '' | *[!0-9]*) owner_until=0 ;; esac
    if [ "$now_ms" -ge "$give_up" ] && [ "$now_ms" -ge "$owner_until" ]; then
      echo "another install holds the guard $guard (owner: ${owner:-unknown})"
      finish busy
    fi
    sleep 0.02
  done
  my_guard=$mine
}
my_guard=""
holds_lock_once=0
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [ "$holds_lock_once" = 1 ]; then
    # still ours? a `lock release --force` and another run's lock may have come in between
    mine_holder=""
    { IFS= read -r mine_holder < "$lockdir/holder.json"; } 2>/dev/null
    if [ "$mine_holder" = "$lock_once" ]; then rm -rf "$lockdir"; fi
  fi
  if [ -n "$my_guard" ] && [ "$(readlink "$guard" 2>/dev/null)" = "$my_guard" ]; then
    rm -f "$guard"
  fi
}
trap cleanup EXIT

mkdir -p "$dir" || { echo "cannot create $dir"; finish write-failed; }
# record mode touches no config: no reload, no guard
[ "$have_config" = 0 ] || take_guard
if [ "$have_config" = 1 ]; then
  # the preview listener's own logs (bgd's probes): there before nginx -t, kept small
  mkdir -p "$root/logs" || { echo "cannot create $root/logs"; finish write-failed; }
  for log in "$root/logs/$app"-preview.*.log; do
    [ -f "$log" ] || continue
    size=$(wc -c < "$log")
    [ "$size" -lt 1048576 ] || : > "$log"
  done
fi

# The deploy lock, checked before anything changes.
if [ -n "$lock_once" ]; then
  if ! mkdir "$lockdir" 2>/dev/null; then
    holder=""
    { IFS= read -r holder < "$lockdir/holder.json"; } 2>/dev/null
    echo "BGD_HOLDER $holder"
    finish locked
  fi
  holds_lock_once=1
  printf '%s' "$lock_once" > "$lockdir/holder.json"
elif [ -n "$lock_token" ]; then
  holder=""
  { IFS= read -r holder < "$lockdir/holder.json"; } 2>/dev/null
  case $holder in
    *"\"$lock_token\""*) ;;
    *) echo "the deploy lock was released or taken over by another run"; finish lock-lost ;;
  esac
fi

# A record this caller cannot read is never replaced: `bgd repair` does that, knowingly.
record_trusted || finish record-untrusted

if [ -n "$flip" ]; then
  # only the active config's own flag, and only from the other state: what the caller saw
  # is still what nginx routes by
  # the path whole: flip-7 is not flip-70 (app names and the generation are [a-z0-9-])
  if ! grep -qE "${flip}([^0-9]|\$)" "$active" 2>/dev/null; then
    echo "the active config does not route by $flip"
    finish flip-stale
  fi
  if [ -e "$flip" ]; then is=on; else is=off; fi
  if [ "$is" = "$flip_to" ]; then
    echo "the flag is already $is"
    finish flip-stale
  fi
  # the flag's marker: once raised, the release the config calls its candidate has been live,
  # so it is the parked one (`/__bgd` says so) even after a rollback lowers the flag again
  marker="$dir/promoted-${flip#"$dir/flip-"}"
  marked=0
  [ ! -e "$marker" ] || marked=1
  # (`true >`, not `: >`: a failed redirection of a special built-in ends the shell)
  if [ "$flip_to" = on ]; then
    true > "$marker" || { echo "cannot create $marker"; finish write-failed; }
    true > "$flip" || { [ "$marked" = 1 ] || rm -f "$marker"; echo "cannot create $flip"; finish write-failed; }
  else
    rm -f "$flip" || { echo "cannot remove $flip"; finish write-failed; }
    [ "$unmark" != 1 ] || rm -f "$marker"
  fi
  # nginx checks the flag at every request: live traffic follows it now, and the record says
  # so at once
  recorded=1
  if ! record; then
    recorded=0
    echo "cannot write the record in $dir"
  fi
  # The caller watched live traffic across the flag and may send the history line that says
  # what it saw: that line replaces this run's, if the lock is still ours. The wait is
  # bounded (an ssh connection that died silently never closes our input). Asked even when
  # the record could not be written: the caller needs to know the flag moved either way.
  if [ "$await_history" = 1 ]; then
    echo "BGD_AWAIT"
    line=""
    if command -v timeout > /dev/null 2>&1; then
      line=$(timeout 15 head -n 1) || line=""
    else
      IFS= read -r line || line=""
    fi
    mine_holder=""
    { IFS= read -r mine_holder < "$lockdir/holder.json"; } 2>/dev/null
    case $recorded:$line in
      "1:{"*"}")
        if [ -z "$lock_once" ] || [ "$mine_holder" = "$lock_once" ]; then
          state="" history=$line
          record || echo "cannot write the history line in $dir"
        fi
        ;;
      *:BGD_UNDO)
        # the caller could not confirm the routing the flag gives: the flag goes back, with
        # the record from before it (--undo-state, --undo-history), in this exec, while the
        # lock is still ours
        if [ -n "$lock_once" ] && [ "$mine_holder" != "$lock_once" ]; then
          echo "the flag stays: the deploy lock was released or taken over by another run"
          finish flipped "recorded=$recorded"
        fi
        # a flag that cannot be put back stays as it is, and the caller is told so
        if [ "$flip_to" = on ]; then
          rm -f "$flip" || { echo "the flag stays: cannot remove $flip"; finish flipped "recorded=$recorded"; }
          [ "$marked" = 1 ] || rm -f "$marker"
        else
          true > "$flip" || { echo "the flag stays: cannot create $flip"; finish flipped "recorded=$recorded"; }
        fi
        state=$undo_state history=$undo_history
        recorded=1
        if [ -z "$state" ] || ! record; then
          recorded=0
          echo "cannot write the record in $dir"
        fi
        finish flipped-back "recorded=$recorded"
        ;;
    esac
  fi
  finish flipped "recorded=$recorded"
fi
if [ "$have_config" = 0 ]; then
  if record; then
    # the run's last write: its lock goes with it, if still its own
    if [ "$release_lock" = 1 ] && [ -n "$lock_token" ]; then
      holder=""
      { IFS= read -r holder < "$lockdir/holder.json"; } 2>/dev/null
      case $holder in
        *"\"$lock_token\""*) rm -rf "$lockdir" && finish recorded unlocked=1 ;;
      esac
    fi
    finish recorded
  fi
  echo "cannot write the record in $dir"
  finish record-failed
fi

every_pid
accepting_of "$every"
old=$accepting
if [ -z "$old" ]; then echo "no nginx worker process is running"; finish not-running; fi
find_nginx || { echo "no nginx binary on PATH, as the running master's or in the usual places"; finish no-nginx; }
rm -f "$dir/prev.conf" "$dir/prev.stub"
{ [ ! -f "$active" ] || cp "$active" "$dir/prev.conf"; } || finish write-failed
{ [ ! -f "$stub" ] || cp "$stub" "$dir/prev.stub"; } || finish write-failed
put "$active" "$config" || { restore; echo "cannot write $active"; finish write-failed; }
current=""
{ IFS= read -r current < "$stub"; } 2>/dev/null
if [ "$current" != "$stub_text" ]; then
  put "$stub" "$stub_text" || { restore; echo "cannot write $stub"; finish write-failed; }
fi
# other apps sharing this nginx (an nginx recreated from its volume has lost their stubs):
# their configs are included again, so their names never fall to another app's server
for other in "$root"/*/active.conf; do
  [ -f "$other" ] || continue
  other_app=${other%/active.conf}
  other_app=${other_app##*/}
  [ "$other_app" = "$app" ] || [ -f "$conf_dir/bgd-$other_app.conf" ] ||
    put "$conf_dir/bgd-$other_app.conf" "include $other;" || true
done
if ! out=$(run_nginx -t 2>&1); then
  restore
  echo "$out"
  finish invalid
fi
# two servers for one name on one port: nginx warns and lets the first win; for bgd that is
# one app answering for another, never accepted
case $out in *"conflicting server name"*)
  restore
  echo "$out"
  finish invalid
  ;;
esac
if ! out=$(reload_nginx 2>&1); then
  restore
  echo "$out"
  finish reload-refused
fi

# The master applies the config after `-s reload` returns: wait for workers that were not
# there before. None within the bound means the master kept the old config (it only logs why).
now
handover_end=$((now_ms + handover_ms))
while :; do
  every_pid
  accepting_of "$every"
  new=""
  for pid in $accepting; do
    case " $old " in *" $pid "*) ;; *) new="$new $pid" ;; esac
  done
  [ -z "$new" ] || break
  now
  if [ "$now_ms" -ge "$handover_end" ]; then
    restore
    reload_nginx > /dev/null 2>&1
    echo "nginx kept its old config (its error log says why)"
    finish not-applied
  fi
  sleep 0.01
done
# The new config serves: record it before anything else can interrupt us.
recorded=1
if ! record; then
  recorded=0
  echo "cannot write the record in $dir"
fi
# Uploaded certificates (ROOT/NAME/tls/) the replaced config named and the new one does not
# are read by no one now: remove them. Files neither names stay (another run's upload for
# its coming install).
if [ -f "$dir/prev.conf" ] && [ -d "$dir/tls" ] && [ ! -L "$dir/tls" ]; then
  for f in "$dir"/tls/*; do
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    if grep -qF "/tls/${f##*/}" "$dir/prev.conf" && ! grep -qF "/tls/${f##*/}" "$active"; then
      rm -f "$f"
    fi
  done
fi
# Traffic logs of a mirror or a canary (ROOT/logs/NAME-traffic-GENERATION.log): only the one
# the new config writes stays (an old worker still draining appends to a removed file, which
# no one reads).
for f in "$root"/logs/"$app"-traffic-*.log; do
  if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
  g=${f##*/}
  g=${g#"$app"-traffic-}
  g=${g%.log}
  case $g in '' | *[!0-9]*) continue ;; esac
  grep -qF "$f" "$active" || rm -f "$f"
done
# Old workers keep accepting for ~100 ms after the new ones start; until they stop, a request
# may still see the old routing.
accepting_of "$old"
while [ -n "$accepting" ] && [ "$now_ms" -lt "$handover_end" ]; do
  sleep 0.01
  accepting_of "$accepting"
  now
done
# Drain: the old workers finish their requests in flight and exit. Past --drain-ms they are
# stopped: bgd does not always own nginx's main config, so worker_shutdown_timeout may be
# unset, and an old worker holding a WebSocket would live forever.
wait_until_gone "$old" "$drain_ms"
stopped=0
if [ -n "$alive" ]; then
  for pid in $alive; do
    # still an nginx worker (a pid may be reused)
    title_of "$pid"
    case $title in "nginx: worker process"*) kill -TERM "$pid" 2>/dev/null && stopped=$((stopped + 1)) ;; esac
  done
  wait_until_gone "$alive" 1000
  for pid in $alive; do
    title_of "$pid"
    case $title in "nginx: worker process"*) kill -KILL "$pid" 2>/dev/null ;; esac
  done
fi
# Rollback flags of replaced configs, and their markers: the old workers that read them are
# gone now.
for f in "$dir"/flip-* "$dir"/promoted-*; do
  [ -e "$f" ] || continue
  g=${f##*/flip-}
  g=${g##*/promoted-}
  case $g in '' | *[!0-9]*) continue ;; esac
  grep -qE "${dir}/flip-${g}([^0-9]|\$)" "$active" || rm -f "$f"
done
finish applied "stopped=$stopped" "recorded=$recorded"
