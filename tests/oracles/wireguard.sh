# WireGuard oracle, one interface (in a network namespace of its own): the configuration and key the
# user-data writes, brought up by the release's wg-quick exactly as wg-quick@IFACE.service does
# (`wg-quick up IFACE`: `wg setconf` on the stripped file, `ip address add` for each Address, MTU,
# routes for AllowedIPs, PostUp). This kernel may lack the wireguard module: wg-quick then falls back
# to wireguard-go, the same interface in userspace. Then `wg show` and `ip` report what was set.
#
# in:  files.list (+ bodies), interface, hosts (lines for /etc/hosts: endpoint names cannot resolve
#      offline), genkey (optional: a key file the host generates at first boot, as kiln's
#      wireguard-key helper does with `wg genkey`, when the user-data does not write it)
# out: up.*, peers.*, port.*, address.*, down.* (see lib.sh)
source /run/kiln-drivers/lib.sh
own_network_namespace

put_files init 0
cat "$in/hosts" >> /etc/hosts
if [ -f "$in/genkey" ]; then
  key=$(cat "$in/genkey")
  if [ ! -e "$key" ]; then
    mkdir -p -- "$(dirname -- "$key")"
    (umask 077 && wg genkey > "$key")
  fi
fi
iface=$(cat "$in/interface")
export WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1
record up wg-quick up "$iface"
record peers wg show "$iface" peers
record port wg show "$iface" listen-port
record address ip -o address show dev "$iface"
record down wg-quick down "$iface"
