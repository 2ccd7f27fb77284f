# sshd oracle, one input: the release's sshd_config (plus the 50-cloud-init.conf Ubuntu's images ship) with every file the user-data writes under
# /etc/ssh/ in place, host keys of exactly the types cloud-init generates, and cloud-init's own
# PasswordAuthentication edit; then OpenSSH's own verdicts: `sshd -t` and `sshd -T -C …` per
# connection (Match blocks evaluated by sshd itself).
#
# in:  files.list (+ bodies), keytypes (one ssh_genkeytypes entry a line), pwauth (yes|no, optional),
#      queries (one `sshd -T -C` connection spec a line), effective-check (the provisioning step's
#      `sh -c` script), kiln-drop-in (its $0), kiln-keywords (its arguments: kiln's keywords, one a line)
# out: keygen-<type>.*, pwauth.*, test.*, effective.*, query-<i>.* (see lib.sh's record)
source /run/kiln-drivers/lib.sh

# The trap Ubuntu's cloud images set (issue 11): they ship this drop-in with passwords on, and root login
# on is what a careless image adds. sshd keeps the first value it reads, so kiln's settings must come
# first whatever the image carries. (cloud-init's pwauth edit below rewrites this file's
# PasswordAuthentication, as it does on Ubuntu; PermitRootLogin stays.)
mkdir -p /etc/ssh/sshd_config.d
printf 'PasswordAuthentication yes\nPermitRootLogin yes\n' > /etc/ssh/sshd_config.d/50-cloud-init.conf

put_files init 0

# cloud-init's ssh module (cc_ssh.py; it runs after write-files and users-groups) deletes every
# /etc/ssh/ssh_host_*key* (ssh_deletekeys defaults to true), then runs `ssh-keygen -t TYPE -N ""
# -f /etc/ssh/ssh_host_TYPE_key` for each ssh_genkeytypes entry whose file does not exist.
rm -f /etc/ssh/ssh_host_*key*
while IFS= read -r type; do
  [ -e "/etc/ssh/ssh_host_${type}_key" ] || record "keygen-$type" ssh-keygen -t "$type" -N '' -f "/etc/ssh/ssh_host_${type}_key"
done < "$in/keytypes"

# ssh_pwauth: cc_set_passwords.handle_ssh_pwauth calls ssh_util.update_ssh_config, which (22.4.2)
# writes sshd_config.d/50-cloud-init.conf when sshd_config includes sshd_config.d. Called directly:
# handle_ssh_pwauth itself skips the edit when no ssh service runs, as in this root.
if [ -f "$in/pwauth" ]; then
  record pwauth python3 -c 'import sys
from cloudinit import ssh_util
ssh_util.update_ssh_config({"PasswordAuthentication": sys.argv[1]})' "$(cat "$in/pwauth")"
fi

# write-files-deferred (final stage), then the provisioning script's `sshd -t; systemctl reload ssh`.
put_files deferred 0
# ssh.service's RuntimeDirectory=sshd: systemd makes it before sshd starts (sshd -t requires it).
mkdir -p /run/sshd

record test /usr/sbin/sshd -t
# The provisioning step's check, as the user-data runs it: `sh -c SCRIPT KILN_DROP_IN KEYWORD…`.
mapfile -t kiln_keywords < "$in/kiln-keywords"
record effective sh -c "$(cat "$in/effective-check")" "$(cat "$in/kiln-drop-in")" "${kiln_keywords[@]}"
i=0
while IFS= read -r query; do
  record "query-$i" /usr/sbin/sshd -T -C "$query"
  i=$((i + 1))
done < "$in/queries"
