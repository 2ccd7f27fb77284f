"""Accounts oracle, every input in one root: the deploy user made the way cloud-init 22.4.2 makes it, in
the order of Debian 12's /etc/cloud/cloud.cfg, against the release's own account files (shadow's
useradd, usermod, passwd; sudo's visudo and sudo):
  init stage:  write-files (owners must exist already), users-groups (useradd, passwd -l, sudo rule)
  final stage: packages (docker.io's postinst adds the docker group), write-files-deferred,
               scripts-user (the provisioning script's `usermod -aG GROUP USER`)
After each input, everything it changed is put back (account files, homes, mail spools, sudoers
drop-ins, the files it wrote), so the next input meets the release's state.

in:  <k>/files.list (+ bodies), name, useradd (NUL-separated argv as cloud-init builds it), lock
     (present: lock_passwd), sudoers (present: what write_sudo_rules writes after its header line:
     a blank line, `# User rules for NAME`, a `NAME RULE` line per rule), docker-group (present: a
     package creates the docker group), groups (one a line, for usermod -aG)
out: <k>/owners-init, owners-deferred, useradd.*, lock.*, visudo.*, usermod-<i>.*, passwd.*, id.*,
     sudo.* (see kiln_files.record)
"""

import email.utils
import grp
import os
import shutil
import subprocess
import sys

import kiln_files

ACCOUNT_FILES = ["/etc/" + n + s for n in ("passwd", "group", "shadow", "gshadow", "subuid", "subgid") for s in ("", "-")]
# Where useradd, cloud-init and the sudo rule leave things behind.
GROWING_DIRS = ["/home", "/var/mail", "/etc/sudoers.d"]
SUDOERS = "/etc/sudoers.d/90-cloud-init-users"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def snapshot():
    files = {}
    for path in ACCOUNT_FILES:
        if os.path.exists(path):
            st = os.stat(path)
            files[path] = (read(path), st.st_mode, st.st_uid, st.st_gid)
    return files, {d: set(os.listdir(d)) for d in GROWING_DIRS}


def restore(state):
    files, listings = state
    for path in ACCOUNT_FILES:
        if path not in files:
            if os.path.lexists(path):
                os.unlink(path)
            continue
        content, mode, uid, gid = files[path]
        with open(path, "wb") as f:
            f.write(content)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    for directory, names in listings.items():
        for name in set(os.listdir(directory)) - names:
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)


def judge(inputs, outputs):
    name = read(os.path.join(inputs, "name")).decode()
    journal = kiln_files.Journal()
    kiln_files.put_files(inputs, outputs, "init", True, journal)
    useradd = [w.decode() for w in read(os.path.join(inputs, "useradd")).split(b"\0")[:-1]]
    kiln_files.record(outputs, "useradd", useradd)
    if os.path.exists(os.path.join(inputs, "lock")):
        kiln_files.record(outputs, "lock", ["passwd", "-l", name])
    rules = os.path.join(inputs, "sudoers")
    if os.path.exists(rules):
        # Distro.write_sudo_rules: a new file gets cloud-init's header line first, mode 0440; an
        # existing one is appended to. Debian's /etc/sudoers already has `@includedir
        # /etc/sudoers.d`, so ensure_sudo_dir adds nothing.
        journal.remember(SUDOERS)
        if os.path.exists(SUDOERS):
            with open(SUDOERS, "ab") as f:
                f.write(read(rules))
        else:
            header = "# Created by cloud-init v. 22.4.2 on %s\n" % email.utils.formatdate(localtime=True)
            with open(SUDOERS, "wb") as f:
                f.write(header.encode() + read(rules))
            os.chmod(SUDOERS, 0o440)
        kiln_files.record(outputs, "visudo", ["visudo", "-c"])
    if os.path.exists(os.path.join(inputs, "docker-group")):
        # docker.io's postinst: `addgroup --system docker` (adduser's front end to groupadd --system)
        # unless the group exists.
        try:
            grp.getgrnam("docker")
        except KeyError:
            subprocess.run(["groupadd", "--system", "docker"], check=True)
    kiln_files.put_files(inputs, outputs, "deferred", True, journal)
    with open(os.path.join(inputs, "groups"), encoding="utf-8") as f:
        for i, group in enumerate(f.read().splitlines()):
            kiln_files.record(outputs, "usermod-%d" % i, ["usermod", "-aG", group, name])
    kiln_files.record(outputs, "passwd", ["getent", "passwd", name])
    kiln_files.record(outputs, "id", ["id", "-nG", name])
    kiln_files.record(outputs, "sudo", ["sudo", "-n", "-l", "-U", name])
    journal.undo()


def main():
    inputs, outputs = sys.argv[1], sys.argv[2]
    # The oracle root has docker.io installed to judge other things; kiln's base image does not, so
    # its group exists only once a package of the user-data creates it.
    subprocess.run(["groupdel", "docker"], check=True)
    release = snapshot()
    for k in sorted(os.listdir(inputs)):
        out = os.path.join(outputs, k)
        os.makedirs(out, exist_ok=True)
        judge(os.path.join(inputs, k), out)
        restore(release)


main()
