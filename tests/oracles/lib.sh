# Sourced by the per-input oracle scripts, which run inside a throwaway copy of the oracle root (see
# `job`) with the input and output directories as arguments: `record` keeps what a program said for
# the judge (tests/kiln/oracles/), `put_files` writes the user-data's write_files the way cloud-init's
# write_files module does.
set -euo pipefail

in=$1 out=$2
mkdir -p "$out"

# No single program the oracles run takes more than a few seconds; a hang is a failure, not a wait.
readonly COMMAND_TIMEOUT=60

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

# put_files PHASE CHOWN: writes the user-data's files as cloud-init does (see put-files.py).
put_files() {
  python3 -S -E /run/kiln-drivers/put-files.py "$in" "$out" "$1" "$2"
}
