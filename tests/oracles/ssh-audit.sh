# ssh-audit oracle, one input: the release's own sshd, configured by every file the user-data writes
# under /etc/ssh/ and holding host keys of exactly the types cloud-init generates, listening on loopback in
# a network namespace of its own; then ssh-audit (3.9, the harness's copy of the pure-Python package)
# audits it as a client would.
#
# in:  files.list (+ bodies), keytypes (one ssh_genkeytypes entry a line), ssh_audit/ (the package)
# out: keygen-<type>.*, test.*, audit.* (audit.out: ssh-audit's JSON report), sshd.log
source /run/kiln-drivers/lib.sh
own_network_namespace

put_files init 0
put_files deferred 0
# cloud-init's ssh module: old keys go, one key per ssh_genkeytypes entry (as in sshd.sh).
rm -f /etc/ssh/ssh_host_*key*
while IFS= read -r type; do
  record "keygen-$type" ssh-keygen -t "$type" -N '' -f "/etc/ssh/ssh_host_${type}_key"
done < "$in/keytypes"
mkdir -p /run/sshd
record test /usr/sbin/sshd -t
[ "$(cat "$out/test.rc")" = 0 ] || exit 0

/usr/sbin/sshd -D -e -o ListenAddress=127.0.0.1 2> "$out/sshd.log" &
sshd_pid=$!
# sshd listens within a second; bounded, so a daemon that never does fails the audit, not the job.
for _ in $(seq 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null; then break; fi
  sleep 0.1
done
# --skip-rate-test: its burst of unauthenticated connections is what OpenSSH 10's PerSourcePenalties
# punishes, and the DHEat verdict it gives is a note, not a failure or warning.
record audit env PYTHONPATH="$in" python3 -m ssh_audit -j --skip-rate-test 127.0.0.1
# (The job's PID namespace ends any process left; stopping sshd here frees the port for nothing else.)
kill "$sshd_pid"
