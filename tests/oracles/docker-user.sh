# DOCKER-USER oracle, every input in one root: the provisioning script's `append_once` lines run as
# kiln defines them, appending kiln's DOCKER-USER rules to UFW's after.rules; then, in a network
# namespace of the input's own, UFW starts as the script's `ufw --force enable` starts it
# (frontend.set_enabled writes ENABLED=yes to ufw.conf, backend.start_firewall runs `ufw-init start`,
# which ufw.service also runs at every boot: its own chains, then before.rules, after.rules and the
# user rules loaded with the release's iptables-restore), and `iptables -S DOCKER-USER` shows what the
# kernel then holds. Between inputs, UFW's files and kiln's directory are put back.
#
# in:  <k>/files.list (+ bodies), <k>/append (the script's append_once lines)
# out: <k>/start.*, <k>/chain.* (see lib.sh)
set -euo pipefail
pristine=$(mktemp -d)
cp -a /etc/ufw "$pristine/ufw"
for dir in "$1"/*/; do
  k=$(basename "$dir")
  rm -rf /etc/ufw /etc/kiln
  cp -a "$pristine/ufw" /etc/ufw
  (
    source /run/kiln-drivers/lib.sh "$1/$k" "$2/$k"
    put_files init 0
    # kiln's own definition, from the provisioning script.
    append_once() {
      grep -qxF -- "$3" "$1" || cat -- "$2" >> "$1"
    }
    source "$in/append"
    sed -i 's/^ENABLED=.*/ENABLED=yes/' /etc/ufw/ufw.conf
    record start unshare --net -- sh -c '/lib/ufw/ufw-init start && iptables -S DOCKER-USER > /run/kiln-docker-user'
    record chain cat /run/kiln-docker-user
    rm -f /run/kiln-docker-user
  )
done
