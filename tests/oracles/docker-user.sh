# DOCKER-USER oracle, one input (in a network namespace of its own): the provisioning script's
# `append_once` lines run as kiln defines them (appending its DOCKER-USER rules to UFW's after.rules),
# then UFW starts the way ufw.service starts it at every boot, `/lib/ufw/ufw-init start`, which loads
# before.rules, user.rules and after.rules with iptables-restore. iptables-restore --test judges the
# appended file alone too, and `iptables -S DOCKER-USER` shows what the kernel holds.
#
# in:  files.list (+ bodies), append (the script's append_once lines)
# out: test.*, start.*, chain.* (see lib.sh)
source /run/kiln-drivers/lib.sh
own_network_namespace

put_files init 0
# kiln's own definition, from the provisioning script.
append_once() {
  grep -qxF -- "$3" "$1" || cat -- "$2" >> "$1"
}
source "$in/append"
record test iptables-restore --test /etc/ufw/after.rules
record start /lib/ufw/ufw-init start
record chain iptables -S DOCKER-USER
