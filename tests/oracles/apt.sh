# apt oracle, one input: the release's apt reads the sources the user-data writes (deb822 .sources
# and one-line .list files, beside the root's own sources.list) and gpg reads every key file:
#   apt-get --print-uris update   parses every source (malformed entries are E: errors) and prints
#                                 the index URIs it would fetch, fetching nothing
#   gpg --show-keys --with-colons what a key file holds: pub/sub records, or sec/ssb for secret keys
#   setpriv --reuid=_apt cat      sources.list(5): key files must be readable by the _apt user
#
#   apt-config dump               apt's own merge of apt.conf.d: unattended-upgrades' origin patterns and
#                                 apt's periodic settings, as apt.systemd.daily and unattended-upgrade read them
#
# in:  files.list (+ bodies), keys (one key file path a line)
# out: update.*, key-<i>.*, read-<i>.*, origins.*, periodic.* (see lib.sh)
source /run/kiln-drivers/lib.sh

put_files init 0
record update apt-get --print-uris update
record origins apt-config dump --format '%v%n' Unattended-Upgrade::Origins-Pattern
record periodic apt-config dump --format '%f %v%n' APT::Periodic
i=0
while IFS= read -r key; do
  home=$(mktemp -d)
  record "key-$i" gpg --homedir "$home" --batch --no-autostart --show-keys --with-colons -- "$key"
  record "read-$i" setpriv --reuid=_apt --regid=nogroup --clear-groups cat -- "$key"
  i=$((i + 1))
done < "$in/keys"
