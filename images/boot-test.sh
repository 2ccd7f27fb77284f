#!/usr/bin/env bash
# Boots a base image (read-only: through a qcow2 overlay) under QEMU TCG + OVMF with a NoCloud
# seed, waits for cloud-init to finish on the serial console, then checks the guest through
# qemu-guest-agent (no network, no SSH) and powers it off.
#
# usage: boot-test.sh BASE.qcow2 [--rundir DIR] [--timeout SECONDS] [--keep] [--hold]
#   --keep: keep the overlay; --hold: leave the VM running after the checks (implies --keep;
#   poke it with qga.py RUNDIR/qga.sock sh '...', stop it with qga.py RUNDIR/qga.sock shutdown)
# prints: console wait result, "boot: N s from QEMU start to cloud-init finished", the guest's
#         `cloud-init status --long` and `systemctl is-system-running`; exit 0 only if all is well.
# Single-quoted $… strings are run in the guest; cleanup runs from the EXIT trap.
# shellcheck disable=SC2016,SC2317
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
base=
rundir=
timeout=300
keep=0
hold=0
usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --rundir) rundir=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --hold) hold=1; keep=1; shift ;;
    -h|--help) usage ;;
    -*) usage ;;
    *) [ -z "$base" ] || usage; base=$1; shift ;;
  esac
done
if [ -z "$base" ] || [ ! -f "$base" ]; then usage; fi
base=$(cd "$(dirname "$base")" && pwd)/$(basename "$base")

if [ -z "$rundir" ]; then
  mkdir -p /var/tmp/kiln-image
  rundir=$(mktemp -d /var/tmp/kiln-image/boot.XXXXXX)
fi
mkdir -p "$rundir"
rundir=$(cd "$rundir" && pwd)
cd "$rundir"
echo "run directory: $rundir" >&2

qemu_pid=
cleanup() {
  local rc=$?
  if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
    kill "$qemu_pid" 2>/dev/null || true
    sleep 1
    kill -9 "$qemu_pid" 2>/dev/null || true
  fi
  if [ "$rc" -ne 0 ]; then
    echo "---- last 40 console lines ($rundir/console.log) ----" >&2
    tail -n 40 console.log 2>/dev/null | tr -d '\r' >&2 || true
  fi
  [ "$keep" -eq 1 ] || [ "$rc" -ne 0 ] || rm -f overlay.qcow2
  exit "$rc"
}
trap cleanup EXIT

# ---- NoCloud seed: vfat labelled CIDATA (cloud-init matches the label case-insensitively) -----
cat > user-data <<'EOF'
#cloud-config
runcmd:
  - [ sh, -c, 'echo "kiln boot test ok" > /var/lib/kiln-boot-test' ]
EOF
cat > meta-data <<EOF
instance-id: kiln-boot-test-$(date +%s)
local-hostname: kiln-test
EOF
rm -f seed.img
mkfs.vfat -C --invariant -n CIDATA -i 43494441 seed.img 1024 >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -i seed.img -m user-data meta-data ::/

# ---- overlay: never write to the base ---------------------------------------------------------
rm -f overlay.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b "$base" overlay.qcow2

# ---- boot -------------------------------------------------------------------------------------
rm -f console.log qga.sock qmp.sock
# shellcheck disable=SC2054  # commas are QEMU option syntax, not array separators
qemu_cmd=(
  qemu-system-x86_64
  -accel tcg
  -m 2048 -smp 2
  -bios /usr/share/ovmf/OVMF.fd
  -nographic -serial file:console.log -monitor none
  -qmp unix:qmp.sock,server=on,wait=off
  -netdev user,id=n0,restrict=on
  # fixed PCI slot 3, and before any device without addr= (those take the next free slot in
  # command-line order): the guest names the NIC ens3 whatever other devices are added
  -device virtio-net-pci,netdev=n0,addr=0x3
  # bootindex: OVMF tries this disk first instead of the default (empty) IDE DVD drive
  -drive file=overlay.qcow2,if=none,id=disk0,format=qcow2,discard=unmap
  -device virtio-blk-pci,drive=disk0,bootindex=0
  -drive file=seed.img,if=none,id=seed0,format=raw,readonly=on
  -device virtio-blk-pci,drive=seed0
  -chardev socket,path=qga.sock,server=on,wait=off,id=qga0
  -device virtio-serial
  -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
  -device virtio-rng-pci
)
# experiments only (e.g. KILN_QEMU_EXTRA='-cpu max'); word-split on purpose
# shellcheck disable=SC2206
qemu_cmd+=(${KILN_QEMU_EXTRA:-})
printf '%q ' "${qemu_cmd[@]}" > qemu.cmdline; echo >> qemu.cmdline
t0=$(date +%s.%N)
nohup "${qemu_cmd[@]}" > qemu.stdout 2> qemu.stderr < /dev/null &
qemu_pid=$!
echo "$qemu_pid" > qemu.pid

# ---- wait for cloud-init on the console (bounded) --------------------------------------------
finished_re='Cloud-init v\. [^ ]+ finished at'
fatal_re='Kernel panic|emergency mode|Give root password for maintenance|Failed to mount /sysroot|ALERT! .* does not exist'
result=timeout
while :; do
  now=$(date +%s.%N)
  elapsed=$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
  if ! kill -0 "$qemu_pid" 2>/dev/null; then result=qemu-exited; break; fi
  if [ -f console.log ]; then
    if grep -Eq "$finished_re" console.log; then result=finished; break; fi
    if grep -Eq "$fatal_re" console.log; then result=fatal; break; fi
  fi
  if awk -v e="$elapsed" -v t="$timeout" 'BEGIN { exit !(e > t) }'; then break; fi
  sleep 1
done
echo "console: $result after ${elapsed} s" >&2
if [ "$result" != finished ]; then
  [ "$result" != qemu-exited ] || cat qemu.stderr >&2
  grep -Ea "$fatal_re" console.log | tr -d '\r' | head -5 >&2 || true
  exit 1
fi
grep -Eao "$finished_re.*" console.log | tr -d '\r' | head -1
echo "boot: ${elapsed} s from QEMU start to cloud-init finished (TCG, 2 vCPUs)"

# ---- checks through the guest agent -----------------------------------------------------------
qga() { /usr/bin/python3 "$here/qga.py" "$rundir/qga.sock" "$@"; }
qga ping
status=0
echo "---- cloud-init status --long"
qga sh 'cloud-init status --long' || status=1
echo "---- cloud-init status --format json (what a harness should parse)"
qga sh 'cloud-init status --format json' || status=1
echo "---- systemctl is-system-running"
# bounded wait: cloud-init finished does not mean every unit has settled
running=$(qga sh 'timeout 60 systemctl is-system-running --wait' || true)
echo "$running"
if [ "$running" != running ]; then
  status=1
  qga sh 'systemctl --failed --no-legend' || true
fi
echo "---- runcmd result, network, boot loader"
qga sh 'cat /var/lib/kiln-boot-test' || status=1
qga sh 'hostname; ip -br addr; networkctl list --no-legend; ls /etc/netplan' || status=1
echo "---- kernel updates: ESP recognised, kernel-install writes where the image's entry is"
# What /etc/kernel/postinst.d/zz-systemd-boot does for a newly installed kernel, replayed with the
# running one: it must succeed and (re)write ESP/debian/KVER/ + loader/entries/debian-KVER.conf.
qga sh 'bootctl is-installed && k=$(uname -r) &&
  kernel-install add "$k" "/boot/vmlinuz-$k" "/boot/initrd.img-$k" &&
  ls /boot/efi/loader/entries/ && bootctl list --no-pager 2>/dev/null | grep -E "^ *(title|id|linux|options):"' || status=1

if [ "$hold" -eq 1 ]; then
  echo "holding: QEMU pid $qemu_pid still running; agent socket $rundir/qga.sock"
  qemu_pid=
  exit $status
fi

# ---- power off (bounded), then make sure QEMU is gone -----------------------------------------
qga shutdown || true
for _ in $(seq 1 60); do
  kill -0 "$qemu_pid" 2>/dev/null || break
  sleep 1
done
if kill -0 "$qemu_pid" 2>/dev/null; then
  echo "guest did not power off within 60 s; killing QEMU" >&2
  status=1
else
  echo "powered off"
fi
wait "$qemu_pid" 2>/dev/null || true
qemu_pid=
exit $status
