#!/bin/bash
# Managed by kiln: makes sure WireGuard interface $1 has a private key in $2 (0600, root) and reports
# its public key. Generates the key when the file is missing, so a generated key never leaves the host
# and is never printed; a key kiln wrote from a secret reference is only checked.
# usage: wireguard-key IFACE KEYFILE PUBFILE
set -euo pipefail
iface=$1 key=$2 pub=$3
umask 077
if [ ! -s "$key" ]; then
  wg genkey > "$key.new"
  mv -f "$key.new" "$key"
fi
chown root:root "$key"
chmod 0600 "$key"
# wg pubkey fails on anything that is not a key: provisioning stops here rather than at wg-quick.
wg pubkey < "$key" > "$pub.new"
chmod 0644 "$pub.new"
mv -f "$pub.new" "$pub"
# stdout reaches cloud-init-output.log and the serial console (where `kiln test` reads it).
echo "kiln: wireguard public key ($iface): $(cat "$pub")"
