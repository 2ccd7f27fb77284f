# Sourced by the per-input oracle scripts, which run inside a throwaway copy of the oracle root (see
# `job`): `record` keeps what a program said for the judge (tests/kiln/oracles/), `put_files` writes
# the user-data's write_files the way cloud-init's write_files module does.
set -euo pipefail

in=$1 out=$2
mkdir -p "$out"

# No single program the oracles run takes more than a few seconds; a hang is a failure, not a wait.
readonly COMMAND_TIMEOUT=60
# Paths the oracles never write into, whatever the user-data says: they reach the kernel that runs
# the tests (the copy of the root is throwaway; the kernel is not).
readonly FORBIDDEN_PREFIXES=(/proc /sys /dev)

# record NAME CMD...: runs CMD (bounded, stdin empty) and keeps its exit status, stdout and stderr
# as $out/NAME.{rc,out,err}. A failing CMD is a verdict for the judge, not an error of the script.
record() {
  local name=$1 rc=0
  shift
  timeout --kill-after=5 "$COMMAND_TIMEOUT" "$@" > "$out/$name.out" 2> "$out/$name.err" < /dev/null || rc=$?
  echo "$rc" > "$out/$name.rc"
}

# Re-runs the calling script in a network namespace of its own (loopback up), for oracles that start
# a firewall or an interface: nothing of one input's network state reaches the next.
own_network_namespace() {
  if [ -z "${KILN_ORACLE_OWN_NETNS:-}" ]; then
    KILN_ORACLE_OWN_NETNS=1 exec unshare --net -- /bin/bash "$0" "$in" "$out"
  fi
  ip link set lo up
}

# Whether NAME is a user (passwd) or group (group) by name, as Python's pwd.getpwnam/grp.getgrnam
# (which cloud-init's chownbyname calls) see it: a number is not a name.
name_exists() {
  local db=$1 name=$2 entry
  entry=$(getent "$db" -- "$name") || return 1
  [ "${entry%%:*}" = "$name" ]
}

# write_one PATH BODY APPEND MODE: one file, as cloud-init's util.write_file writes it.
write_one() {
  mkdir -p -- "$(dirname -- "$1")" &&
    if [ "$3" = 1 ]; then cat -- "$2" >> "$1"; else cat -- "$2" > "$1"; fi &&
    chmod -- "$4" "$1"
}

# put_files PHASE CHOWN: writes the entries of $in/files.list (NUL-separated records: path, octal
# mode, owner, defer 0/1, append 0/1, body file) whose phase matches: `init` (cloud-init's
# write-files module, before users exist), `deferred` (write-files-deferred, after users and
# packages) or `all`. Parents are created 0755, the body written (or appended), the mode set. With
# CHOWN=1 the owner is applied as cloud-init does (user[:group] by name); an owner that does not
# exist fails the module in cloud-init, and is listed in $out/owners-PHASE (path TAB owner) here.
# Paths the oracles must not write are listed in $out/refused (the user-data must not name them),
# files that cannot be written (a directory is in the way) in $out/unwritable.
put_files() {
  local phase=$1 chown=$2 path mode owner defer append body real user group
  : > "$out/owners-$phase"
  [ -f "$in/files.list" ] || return 0
  while IFS= read -r -d '' path && IFS= read -r -d '' mode && IFS= read -r -d '' owner &&
    IFS= read -r -d '' defer && IFS= read -r -d '' append && IFS= read -r -d '' body; do
    case $phase in
      init) [ "$defer" = 0 ] || continue ;;
      deferred) [ "$defer" = 1 ] || continue ;;
    esac
    real=$(realpath -m -- "$path")
    for prefix in "${FORBIDDEN_PREFIXES[@]}"; do
      if [ "$real" = "$prefix" ] || [[ $real == "$prefix"/* ]]; then
        printf '%s\n' "$path" >> "$out/refused"
        continue 2
      fi
    done
    if ! write_one "$real" "$in/$body" "$append" "$mode" 2>> "$out/unwritable"; then
      printf '%s: cannot be written there\n' "$path" >> "$out/unwritable"
      continue
    fi
    [ "$chown" = 1 ] || continue
    user=${owner%%:*} group=
    [[ $owner != *:* ]] || group=${owner#*:}
    [ -n "$user$group" ] || continue
    if { [ -n "$user" ] && ! name_exists passwd "$user"; } || { [ -n "$group" ] && ! name_exists group "$group"; }; then
      printf '%s\t%s\n' "$path" "$owner" >> "$out/owners-$phase"
      continue
    fi
    chown -- "$user${group:+:$group}" "$real"
  done < "$in/files.list"
}
