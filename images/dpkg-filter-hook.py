#!/usr/bin/python3
"""mmdebstrap's extract hook for images/build.sh: makes the extracted Essential packages what dpkg's filters
would have unpacked.

Run with the root as its argument, after tar extracted the Essential packages and before dpkg installs them.
Installs the image's dpkg filter file (kiln-minimal, beside this script) as /etc/dpkg/dpkg.cfg.d/kiln-minimal,
so dpkg applies it from the first package it installs, and removes from the tree what those filters exclude.
The rules are dpkg's (src/main/filters.c, as mmdebstrap's mmtarfilter restates them): the last pattern that
matches a path decides; `*` matches `/` too (fnmatch without FNM_PATHNAME); a directory or symlink an exclude
would drop stays when it starts with the fixed part of an include, that part's trailing slashes left out (it is
on the way to what that include keeps). dpkg reads a backslash as an escape, and Python's fnmatch as a character,
so a pattern with one is refused rather than judged otherwise than dpkg would.
"""
import fnmatch
import os
import re
import shutil
import sys


def read_filters(config):
    """(is_include, compiled pattern, the pattern's fixed part before its first wildcard without trailing slashes),
    in the file's order."""
    filters = []
    with open(config) as lines:
        for line in lines:
            kind, _, pattern = line.strip().partition("=")
            if kind in ("path-exclude", "path-include"):
                if "\\" in pattern:
                    sys.exit(f"dpkg-filter-hook: {line.strip()}: a backslash escape is not read here as dpkg reads it")
                fixed = re.split(r"[*?\[\\]", pattern)[0].rstrip("/")
                filters.append((kind == "path-include", re.compile(fnmatch.translate(pattern)), fixed))
    return filters


def excluded(filters, path, dir_or_link):
    """Whether dpkg would leave `path` (absolute, as inside the image) out."""
    skip = False
    for include, regex, _ in filters:
        if regex.match(path):
            skip = not include
    if skip and dir_or_link:
        return not any(include and path.startswith(fixed) for include, _, fixed in filters)
    return skip


def main(root):
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kiln-minimal")
    filters = read_filters(config)
    target = os.path.join(root, "etc/dpkg/dpkg.cfg.d/kiln-minimal")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(config, target)
    os.chmod(target, 0o644)
    # Bottom-up, so a directory is judged after what was in it: one dpkg drops stays if anything in it stays.
    for top, dirs, files in os.walk(root, topdown=False):
        inside = "/" + os.path.relpath(top, root) if top != root else ""
        for name in files:
            full = os.path.join(top, name)
            if excluded(filters, f"{inside}/{name}", os.path.islink(full)):
                os.remove(full)
        for name in dirs:
            full = os.path.join(top, name)
            if not excluded(filters, f"{inside}/{name}", True):
                continue
            if os.path.islink(full):
                os.remove(full)
            elif not os.listdir(full):
                os.rmdir(full)


if __name__ == "__main__":
    main(sys.argv[1])
