"""ufw oracle, every input in one process: the release's ufw (0.36.2) runs each input's `ufw` commands
for real, in order, against a fresh copy of its configuration (this root is throwaway; the firewall
is not enabled, so rules are only stored, as before `ufw --force enable`), through the same code path
as /usr/sbin/ufw's __main__: ufw.frontend.parse_command, then UFWFrontend(dryrun).do_action. What
ufw refuses ends in ufw.util.error (SystemExit) or UFWError; warnings go to stderr ("WARN: ...").
The command words come from bash itself: the lines run with `ufw` defined as a function printing
its arguments, so quoting is undone exactly as on the host.

in:  <k>/lines (the provisioning script's ufw lines), <k>/files.list (+ bodies: the user-data's
     files under /etc/ufw and /etc/default/ufw, written first)
out: <k>/ufw.json: {"words_error": text, "commands": [{"argv", "status": ok|error|crash|skipped,
     "stderr", "output"}], "rules4": [tuple lines], "rules6": [...], "incoming", "outgoing"}
"""

import functools
import gettext
import io
import json
import os
import shutil
import subprocess
import sys
import traceback
import warnings

import ufw.common
import ufw.frontend
import ufw.util
from ufw.common import UFWError

gettext.install(ufw.common.programName)
# ufw's permission checks look at its own program file too; judge the real one's.
sys.argv[0] = "/usr/sbin/ufw"
# What this kernel's netfilter and iptables are does not change between commands: ufw asks with a
# dozen iptables runs per rule (backend.initcaps, UFWBackend.__init__); ask once, answer the same.
ufw.util.get_netfilter_capabilities = functools.lru_cache(maxsize=None)(ufw.util.get_netfilter_capabilities)
ufw.util.get_iptables_version = functools.lru_cache(maxsize=None)(ufw.util.get_iptables_version)

TRACKED_TREE = "/etc/ufw"
TRACKED_FILE = "/etc/default/ufw"
PRISTINE = "/run/kiln-ufw-pristine"
WORDS = 'ufw() { printf "%s\\0" "$#" "$@"; }\n'
# `ufw --force enable` would load the rules into this namespace's netfilter: judged elsewhere.
SKIPPED = [["--force", "enable"]]


class Stderr:
    """Collects what ufw writes to sys.stderr: ufw.util._print writes bytes, or text while
    ufw.util.msg_output is set (no .buffer attribute, so it writes here directly)."""

    def __init__(self):
        self.data = bytearray()

    def write(self, text):
        self.data += text if isinstance(text, bytes) else text.encode("utf-8")

    def flush(self):
        pass

    def text(self):
        return self.data.decode("utf-8", "replace")


def restore():
    shutil.rmtree(TRACKED_TREE)
    shutil.copytree(os.path.join(PRISTINE, "ufw"), TRACKED_TREE, symlinks=True)
    shutil.copy2(os.path.join(PRISTINE, "default-ufw"), TRACKED_FILE)


def put_files(directory):
    """Writes the input's files as lib.sh's put_files does (parents 0755, body, mode)."""
    listing = os.path.join(directory, "files.list")
    if not os.path.exists(listing):
        return
    fields = open(listing, "rb").read().split(b"\0")[:-1]
    for i in range(0, len(fields), 6):
        path, mode, _owner, _defer, append, body = (f.decode() for f in fields[i : i + 6])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab" if append == "1" else "wb") as f:
            f.write(open(os.path.join(directory, body), "rb").read())
        os.chmod(path, int(mode, 8))


def words(lines):
    """The argv of each ufw call in LINES, as bash splits them; or an error text."""
    result = subprocess.run(["bash", "-c", WORDS + lines], capture_output=True, check=False)
    if result.returncode != 0 or result.stderr:
        return None, "bash: exit %d: %s" % (result.returncode, result.stderr.decode("utf-8", "replace"))
    fields = result.stdout.split(b"\0")[:-1]
    calls, i = [], 0
    while i < len(fields):
        count = int(fields[i])
        calls.append([f.decode("utf-8", "replace") for f in fields[i + 1 : i + 1 + count]])
        i += 1 + count
    return calls, ""


def run(argv):
    """One command as /usr/sbin/ufw runs it; returns (status, stderr, output)."""
    stderr, output = Stderr(), io.StringIO()
    saved = sys.stderr
    sys.stderr, ufw.util.msg_output = stderr, output
    warnings.showwarning = lambda message, *_: ufw.util.warn(message)
    status = "ok"
    try:
        args = ["/usr/sbin/ufw"] + argv
        idx = 2 if len(args) > 1 and args[1].lower() == "--dry-run" else 1
        app_action = len(args) > idx and args[idx].lower() == "app"
        try:
            pr = ufw.frontend.parse_command(args)
        except ValueError as e:
            # /usr/sbin/ufw prints "Invalid syntax" and the usage; the parser's reason is kept too.
            if str(e):
                ufw.util.error("(parser) %s" % e, do_exit=False)
            ufw.util.error(ufw.frontend.get_command_help())
        except UFWError as e:
            ufw.util.error(e.value)
        if pr.action in ("help", "--help", "-h", "version", "--version"):
            return status, stderr.text(), output.getvalue()
        try:
            ui = ufw.frontend.UFWFrontend(pr.dryrun)
        except UFWError as e:
            ufw.util.error(e.value)
        try:
            if app_action and "type" in pr.data and pr.data["type"] == "app":
                res = ui.do_application_action(pr.action, pr.data["name"])
            elif pr.action == "enable" and not pr.force and not ui.continue_under_ssh():
                res = "Aborted"
            elif "rule" in pr.data:
                res = ui.do_action(pr.action, pr.data["rule"], pr.data["iptype"], pr.force)
            else:
                res = ui.do_action(pr.action, "", "", pr.force)
            if res != "":
                ufw.util.msg(res)
        except UFWError as e:
            ufw.util.error(e.value)
    except SystemExit as e:
        status = "ok" if e.code in (0, None) else "error"
    except Exception:
        status = "crash"
        stderr.write(traceback.format_exc())
    finally:
        sys.stderr, ufw.util.msg_output = saved, None
    return status, stderr.text(), output.getvalue()


def tuples(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.startswith("### tuple ###")]


def judge(directory):
    restore()
    put_files(directory)
    calls, words_error = words(open(os.path.join(directory, "lines"), encoding="utf-8").read())
    commands = []
    for argv in calls or []:
        if argv in SKIPPED:
            commands.append({"argv": argv, "status": "skipped", "stderr": "", "output": ""})
            continue
        status, err, out = run(argv)
        commands.append({"argv": argv, "status": status, "stderr": err, "output": out})
    stderr = Stderr()
    saved, sys.stderr = sys.stderr, stderr
    try:
        backend = ufw.frontend.UFWFrontend(False).backend
        incoming, outgoing = backend._get_default_policy("input"), backend._get_default_policy("output")
    except (UFWError, SystemExit) as e:
        incoming = outgoing = "unreadable: %s %s" % (getattr(e, "value", ""), stderr.text())
    finally:
        sys.stderr = saved
    return {
        "words_error": words_error,
        "commands": commands,
        "rules4": tuples("/etc/ufw/user.rules"),
        "rules6": tuples("/etc/ufw/user6.rules"),
        "incoming": incoming,
        "outgoing": outgoing,
    }


def main():
    inputs, outputs = sys.argv[1], sys.argv[2]
    os.makedirs(PRISTINE)
    shutil.copytree(TRACKED_TREE, os.path.join(PRISTINE, "ufw"), symlinks=True)
    shutil.copy2(TRACKED_FILE, os.path.join(PRISTINE, "default-ufw"))
    for k in sorted(os.listdir(inputs)):
        verdict = judge(os.path.join(inputs, k))
        os.makedirs(os.path.join(outputs, k), exist_ok=True)
        with open(os.path.join(outputs, k, "ufw.json"), "w", encoding="utf-8") as f:
            json.dump(verdict, f)


main()
