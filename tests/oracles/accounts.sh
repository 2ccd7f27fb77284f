# Accounts oracle, one input: the deploy user made the way cloud-init 22.4.2 makes it, in the order of
# Debian 12's /etc/cloud/cloud.cfg, against the release's own account files (shadow's useradd,
# usermod, passwd; sudo's visudo):
#   init stage:  write-files (owners must exist already), users-groups (useradd, passwd -l, sudo rule)
#   final stage: packages (docker.io's postinst adds the docker group), write-files-deferred,
#                scripts-user (the provisioning script's `usermod -aG GROUP USER`)
#
# in:  files.list (+ bodies), name, useradd (NUL-separated argv as cloud-init builds it), lock
#      (present: lock_passwd), sudoers (present: what write_sudo_rules writes after its header line:
#      a blank line, `# User rules for NAME`, a `NAME RULE` line per rule), docker-group
#      (present: a package creates the docker group), groups (one a line, for usermod -aG)
# out: owners-init, owners-deferred, useradd.*, lock.*, visudo.*, usermod-<i>.*, passwd.*, id.*,
#      sudo.* (see lib.sh)
source /run/kiln-drivers/lib.sh

name=$(cat "$in/name")

# The oracle root has docker.io installed to judge other things; kiln's base image does not, so its
# group exists only once a package of the user-data creates it.
groupdel docker

put_files init 1

mapfile -d '' -t useradd < "$in/useradd"
record useradd "${useradd[@]}"
[ ! -f "$in/lock" ] || record lock passwd -l "$name"

if [ -f "$in/sudoers" ]; then
  # Distro.write_sudo_rules: a new file gets cloud-init's header line first; mode 0440. Debian's
  # /etc/sudoers already has `@includedir /etc/sudoers.d` (ensure_sudo_dir adds nothing).
  rules=/etc/sudoers.d/90-cloud-init-users
  if [ -e "$rules" ]; then
    cat "$in/sudoers" >> "$rules"
  else
    { printf '# Created by cloud-init v. 22.4.2 on %s\n' "$(date -R)"; cat "$in/sudoers"; } > "$rules"
    chmod 0440 "$rules"
  fi
  record visudo visudo -c
fi

if [ -f "$in/docker-group" ]; then
  # docker.io's postinst: `addgroup --system docker` unless the group exists.
  getent group docker > /dev/null || addgroup --quiet --system docker
fi

put_files deferred 1

i=0
while IFS= read -r group; do
  record "usermod-$i" usermod -aG "$group" "$name"
  i=$((i + 1))
done < "$in/groups"

record passwd getent passwd "$name"
record id id -nG "$name"
record sudo sudo -n -l -U "$name"
