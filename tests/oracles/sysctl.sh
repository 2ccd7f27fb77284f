# sysctl oracle, every input in one root: kiln's files written as cloud-init writes them and the
# provisioning script's `append_once` lines run as kiln defines them (pointing UFW's IPT_SYSCTL at kiln's
# file in /etc/default/ufw), then, in a network namespace of
# the input's own (the net.* settings are per namespace; nothing reaches this machine's), what a boot
# does in the order it does it: systemd-sysctl applies every sysctl.d file (`--prefix=/net`: only the
# namespaced settings, so no kernel.* or fs.* value of the root's files reaches this machine), then
# ufw.service's `ufw-init start` applies IPT_SYSCTL (/etc/default/ufw) with `sysctl -p`, after it, as at
# every boot and every `ufw enable`. `sysctl KEY…` then prints what the kernel holds.
#
# in:  <k>/files.list (+ bodies), <k>/append (the script's append_once lines), <k>/keys (one key a line),
#      <k>/ufw (present: the host runs UFW)
# out: <k>/values.* (see lib.sh)
set -euo pipefail
pristine=$(mktemp -d)
cp -a /etc/ufw "$pristine/ufw"
cp -a /etc/sysctl.d "$pristine/sysctl.d"
cp -a /etc/default/ufw "$pristine/default-ufw"
for dir in "$1"/*/; do
  k=$(basename "$dir")
  rm -rf /etc/ufw /etc/sysctl.d /etc/kiln
  cp -a "$pristine/ufw" /etc/ufw
  cp -a "$pristine/sysctl.d" /etc/sysctl.d
  cp -a "$pristine/default-ufw" /etc/default/ufw
  (
    source /run/kiln-drivers/lib.sh "$1/$k" "$2/$k"
    put_files init 0
    # kiln's own definition, from the provisioning script.
    append_once() {
      grep -qxF -- "$3" "$1" || cat -- "$2" >> "$1"
    }
    source "$in/append"
    mapfile -t keys < "$in/keys"
    ufw=/bin/true
    if [ -e "$in/ufw" ]; then
      # As the script's `ufw --force enable` leaves it (frontend.set_enabled), so ufw-init starts.
      sed -i 's/^ENABLED=.*/ENABLED=yes/' /etc/ufw/ufw.conf
      ufw='/lib/ufw/ufw-init start'
    fi
    # shellcheck disable=SC2016 # expanded by the inner shell
    record values unshare --net -- sh -c '/lib/systemd/systemd-sysctl --prefix=/net && '"$ufw"' && sysctl "$@"' sh "${keys[@]}"
  )
done
