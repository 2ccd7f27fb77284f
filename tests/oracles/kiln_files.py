"""Shared by the Python drivers (run inside the throwaway root): write a user-data's write_files the way
cloud-init 22.4.2's write_files module does, record programs for the judge as lib.sh's `record` does,
and undo everything written (a journal) so one root can serve many inputs.

cc_write_files.write_files → util.write_file, then util.chownbyname: parents made with the default
mode (0755 under umask 022), the body written or appended, the mode set, and the owner (`user[:group]`,
split by util.extract_usergroup) looked up by name with pwd.getpwnam and grp.getgrnam. An owner that
does not exist makes cloud-init's module fail; it is listed in OUT/owners-PHASE (path TAB owner) and
the file left to root. Paths the oracles never write whatever the user-data says (they reach the
kernel running the tests: /proc, /sys, /dev) are listed in OUT/refused, files that cannot be written
in OUT/unwritable.
"""

import grp
import os
import pwd
import shutil
import subprocess

FORBIDDEN = ("/proc", "/sys", "/dev")
# No single program the oracles run takes more than a few seconds; a hang is a failure, not a wait.
COMMAND_TIMEOUT = 60


def note(outputs, name, line):
    with open(os.path.join(outputs, name), "a", encoding="utf-8", errors="replace") as f:
        f.write(line + "\n")


def record(outputs, name, argv):
    """Runs ARGV (bounded, stdin empty) and keeps its exit status, stdout and stderr as
    OUT/NAME.{rc,out,err}. A failing ARGV is a verdict for the judge, not an error of the driver."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT, check=False, stdin=subprocess.DEVNULL)
        rc, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = 124, e.stdout or b"", (e.stderr or b"") + b"timed out"
    for suffix, data in (("out", out), ("err", err)):
        with open(os.path.join(outputs, "%s.%s" % (name, suffix)), "wb") as f:
            f.write(data)
    with open(os.path.join(outputs, name + ".rc"), "w", encoding="utf-8") as f:
        f.write("%d\n" % rc)
    return rc


def extract_usergroup(owner):
    """util.extract_usergroup: `user:group` or `user`; empty, -1 and none mean unchanged."""
    if not owner:
        return None, None
    tokens = owner.split(":", 1)
    user = tokens[0].strip()
    group = tokens[1].strip() if len(tokens) == 2 else None
    if not user or user == "-1" or user.lower() == "none":
        user = None
    if not group or group == "-1" or group.lower() == "none":
        group = None
    return user, group


class Journal:
    """Remembers what each path was before the first change, and puts it back."""

    def __init__(self):
        self.before = []
        self.seen = set()

    def remember(self, path):
        if path in self.seen:
            return
        self.seen.add(path)
        if os.path.islink(path):
            self.before.append((path, "link", os.readlink(path)))
        elif os.path.isdir(path):
            self.before.append((path, "dir", None))
        elif os.path.exists(path):
            st = os.stat(path)
            with open(path, "rb") as f:
                self.before.append((path, "file", (f.read(), st.st_mode, st.st_uid, st.st_gid)))
        else:
            self.before.append((path, "absent", None))

    def remember_tree(self, path):
        """PATH and every missing parent (created by makedirs), outermost first."""
        missing = []
        parent = os.path.dirname(path)
        while parent and not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(missing):
            self.remember(directory)
        self.remember(path)

    def undo(self):
        for path, kind, data in reversed(self.before):
            if os.path.isdir(path) and not os.path.islink(path):
                if kind != "dir":
                    shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
            if kind == "link":
                os.symlink(data, path)
            elif kind == "file":
                content, mode, uid, gid = data
                with open(path, "wb") as f:
                    f.write(content)
                os.chown(path, uid, gid)
                os.chmod(path, mode)
        self.before, self.seen = [], set()


def put_files(inputs, outputs, phase, chown, journal=None):
    """Writes the records of IN/files.list (NUL-separated: path, octal mode, owner, defer 0/1,
    append 0/1, body file) whose phase matches: init (not deferred), deferred, or all."""
    os.makedirs(outputs, exist_ok=True)
    with open(os.path.join(outputs, "owners-" + phase), "w", encoding="utf-8"):
        pass
    listing = os.path.join(inputs, "files.list")
    fields = open(listing, "rb").read().split(b"\0")[:-1] if os.path.exists(listing) else []
    for i in range(0, len(fields), 6):
        path, mode, owner, defer, append, body = (f.decode("utf-8", "surrogateescape") for f in fields[i : i + 6])
        if phase == "init" and defer != "0" or phase == "deferred" and defer != "1":
            continue
        real = os.path.realpath(path)
        if any(real == p or real.startswith(p + "/") for p in FORBIDDEN):
            note(outputs, "refused", path)
            continue
        try:
            if journal is not None:
                journal.remember_tree(real)
            os.makedirs(os.path.dirname(real), exist_ok=True)
            with open(real, "ab" if append == "1" else "wb") as f:
                f.write(open(os.path.join(inputs, body), "rb").read())
            os.chmod(real, int(mode, 8))
        except OSError as e:
            note(outputs, "unwritable", "%s: %s" % (path, e.strerror))
            continue
        if not chown:
            continue
        user, group = extract_usergroup(owner)
        try:
            uid = pwd.getpwnam(user).pw_uid if user else -1
            gid = grp.getgrnam(group).gr_gid if group else -1
        except KeyError:
            note(outputs, "owners-" + phase, "%s\t%s" % (path, owner))
            continue
        os.chown(real, uid, gid)
