# bgd's deploy lock in the nginx container (POSIX sh). `mkdir` is atomic, so one run holds
# the lock: the directory DIR/lock with the holder's description in holder.json.
#
# Inputs, all named (--key value):
#   --dir DIR        bgd's directory for the app
#   --op OP          acquire | take-over | release
#   --holder JSON    acquire, take-over: who takes the lock
#   --token TOKEN    take-over: the stale holder's token (it must still hold the lock);
#                    release: the caller's token ("" releases whoever holds it: --force)
#
# Output: `BGD_HOLDER <json>` when another run holds the lock, then one last line
#   BGD_OUTCOME <outcome>
# taken        the lock is the caller's now
# released     the lock was removed (or was free)
# held         another run holds it (BGD_HOLDER first, empty when it has no holder.json)
# failed       the directory cannot be written
# bad-input    an unknown option or a missing value
set -u

finish() {
  echo "BGD_OUTCOME $1"
  exit 0
}
show_holder() {
  holder=""
  { IFS= read -r holder < "$dir/lock/holder.json"; } 2>/dev/null
  echo "BGD_HOLDER $holder"
}

dir="" op="" new_holder="" token="" have_token=0
while [ $# -gt 0 ]; do
  if [ $# -lt 2 ]; then echo "$1 needs a value"; finish bad-input; fi
  case $1 in
    --dir) dir=$2 ;;
    --op) op=$2 ;;
    --holder) new_holder=$2 ;;
    --token) token=$2; have_token=1 ;;
    *) echo "unknown option $1"; finish bad-input ;;
  esac
  shift 2
done
[ -n "$dir" ] || { echo "--dir is required"; finish bad-input; }

# take_lock: makes the lock this caller's, or says who holds it
take_lock() {
  if mkdir "$dir/lock" 2>/dev/null; then
    printf '%s' "$new_holder" > "$dir/lock/holder.json" || { rm -rf "$dir/lock"; finish failed; }
    finish taken
  fi
  show_holder
  finish held
}

case $op in
  acquire)
    [ -n "$new_holder" ] || { echo "--holder is required"; finish bad-input; }
    mkdir -p "$dir" || finish failed
    take_lock
    ;;
  take-over)
    if [ -z "$new_holder" ] || [ -z "$token" ]; then
      echo "--holder and --token are required"
      finish bad-input
    fi
    holder=""
    { IFS= read -r holder < "$dir/lock/holder.json"; } 2>/dev/null
    case $holder in
      *"\"$token\""*) ;;
      *) show_holder; finish held ;;
    esac
    # Of two runs taking over the same stale lock, one wins: the take-over holds a second
    # directory, and the holder is read again under it (a fresh lock is never removed).
    if ! mkdir "$dir/lock.takeover" 2>/dev/null; then show_holder; finish held; fi
    holder=""
    { IFS= read -r holder < "$dir/lock/holder.json"; } 2>/dev/null
    case $holder in
      *"\"$token\""*) rm -rf "$dir/lock" ;;
    esac
    if mkdir "$dir/lock" 2>/dev/null; then
      printf '%s' "$new_holder" > "$dir/lock/holder.json" || { rm -rf "$dir/lock" "$dir/lock.takeover"; finish failed; }
      rmdir "$dir/lock.takeover"
      finish taken
    fi
    rmdir "$dir/lock.takeover"
    show_holder
    finish held
    ;;
  release)
    [ "$have_token" = 1 ] || { echo "--token is required (empty to release whoever holds it)"; finish bad-input; }
    # --force also clears a take-over that died half way
    [ -n "$token" ] || rm -rf "$dir/lock.takeover"
    [ -d "$dir/lock" ] || finish released
    holder=""
    { IFS= read -r holder < "$dir/lock/holder.json"; } 2>/dev/null
    case $holder in
      *"\"$token\""*) ;;
      *) if [ -n "$token" ]; then show_holder; finish held; fi ;;
    esac
    rm -rf "$dir/lock" || finish failed
    finish released
    ;;
  *) echo "unknown --op $op"; finish bad-input ;;
esac
