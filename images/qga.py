#!/usr/bin/python3
"""Minimal qemu-guest-agent client: run commands in the guest over the virtio-serial socket.

usage: qga.py SOCKET ping
       qga.py SOCKET exec [--timeout S] -- CMD [ARG...]    (prints stdout/stderr, exits with the guest status)
       qga.py SOCKET sh [--timeout S] 'shell command'      (same, through /bin/sh -c)
       qga.py SOCKET shutdown                              (guest-shutdown mode=powerdown; no reply expected)

Protocol (QEMU guest agent, JSON over a byte stream, one object per line):
  * The socket is a plain chardev: the agent may have half-read garbage from an earlier client,
    and replies to an earlier client may still be queued. So first send a 0xFF byte (the agent's
    parser resets on it) and then {"execute":"guest-sync-delimited","arguments":{"id":N}}: the reply
    is preceded by a 0xFF byte; discard everything up to it, then read lines until one is
    {"return": N}.
  * guest-exec {"path","arg","capture-output":true} -> {"return":{"pid":P}}
  * guest-exec-status {"pid":P} -> {"return":{"exited":bool,"exitcode":N,"out-data":b64,"err-data":b64}}
    poll until exited; out-data/err-data are base64 and absent when empty.
  * guest-shutdown never replies when it works (the guest goes away).
"""
import base64
import json
import os
import random
import socket
import sys
import time


class Agent:
    def __init__(self, path, timeout=10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def _send(self, obj):
        self.sock.sendall(json.dumps(obj).encode() + b"\n")

    def _readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("guest agent socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line

    def sync(self, tries=30):
        """Resynchronise the stream; retries because the agent may not be up yet."""
        for attempt in range(tries):
            ident = random.randrange(1, 2**31)
            try:
                self.sock.sendall(b"\xff")
                self._send({"execute": "guest-sync-delimited", "arguments": {"id": ident}})
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline:
                    line = self._readline()
                    if b"\xff" in line:
                        line = line.rsplit(b"\xff", 1)[1]
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if msg.get("return") == ident:
                        return
            except socket.timeout:
                pass
            time.sleep(1)
        raise TimeoutError("guest agent did not answer guest-sync-delimited")

    def call(self, command, arguments=None):
        msg = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self._send(msg)
        while True:
            line = self._readline().strip().lstrip(b"\xff")
            if not line:
                continue
            reply = json.loads(line)
            if "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")
            if "return" in reply:
                return reply["return"]

    def exec(self, argv, timeout=60.0):
        pid = self.call("guest-exec", {"path": argv[0], "arg": argv[1:], "capture-output": True})["pid"]
        deadline = time.monotonic() + timeout
        while True:
            st = self.call("guest-exec-status", {"pid": pid})
            if st.get("exited"):
                out = base64.b64decode(st.get("out-data", ""))
                err = base64.b64decode(st.get("err-data", ""))
                code = st.get("exitcode", 128 + st.get("signal", 0))
                return code, out, err
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest command did not finish in {timeout}s: {argv}")
            time.sleep(0.2)

    def shutdown(self):
        self._send({"execute": "guest-shutdown", "arguments": {"mode": "powerdown"}})


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, op, rest = argv[1], argv[2], argv[3:]
    timeout = 60.0
    if rest[:1] == ["--timeout"]:
        timeout = float(rest[1])
        rest = rest[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    agent = Agent(path)
    agent.sync()
    if op == "ping":
        agent.call("guest-ping")
        print("guest agent: ok")
        return 0
    if op == "shutdown":
        agent.shutdown()
        return 0
    if op in ("exec", "sh"):
        cmd = ["/bin/sh", "-c", " ".join(rest)] if op == "sh" else rest
        code, out, err = agent.exec(cmd, timeout)
        sys.stdout.buffer.write(out)
        sys.stderr.buffer.write(err)
        return code
    print(f"unknown operation {op}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
