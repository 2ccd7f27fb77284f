"""cloud-init oracle, every input in one process: the root's cloud-init (22.4.2 in Debian 12, 25.1.4 in
Debian 13) validates each user-data with the code `cloud-init schema --config-file F` runs
(cloudinit.config.schema: handle_schema_args → validate_cloudconfig_file against get_schema()), without
a Python start per file.

A deprecated key fails too. The CLI only prints deprecations ("Cloud config schema deprecations: …",
exit 0), and cloud-init logs them on every boot (22.4: as warnings; 25.1: as deprecations that
`cloud-init status` reports as recoverable errors), so kiln must emit none: they are read from the
SchemaValidationError that validate_cloudconfig_schema raises (strict=True) and the CLI catches.

in:  <k>/user-data
     <k>/schema.json (optional): validate against this schema instead of the root's own (Ubuntu's
     25.1.4 schema, judged by Debian 13's 25.1.4 code)
out: <k>/schema.json: {"ok": bool, "errors": text}
"""

import contextlib
import io
import json
import os
import sys

from cloudinit.config import schema

deprecations = []
validate_schema = schema.validate_cloudconfig_schema


def recording(*args, **kwargs):
    """validate_cloudconfig_schema, keeping the deprecations of the error it raises."""
    try:
        return validate_schema(*args, **kwargs)
    except schema.SchemaValidationError as e:
        deprecations.extend(getattr(e, "schema_deprecations", None) or [])
        raise


# validate_cloudconfig_file calls it through the module's global name.
schema.validate_cloudconfig_schema = recording

inputs, outputs = sys.argv[1], sys.argv[2]
own_schema = schema.get_schema()
for k in sorted(os.listdir(inputs)):
    path = os.path.join(inputs, k, "user-data")
    given = os.path.join(inputs, k, "schema.json")
    if os.path.exists(given):
        with open(given, encoding="utf-8") as f:
            full_schema = json.load(f)
    else:
        full_schema = own_schema
    deprecations.clear()
    said = io.StringIO()
    try:
        # What the CLI prints (the deprecations, again) is kept out of the driver's own output.
        with contextlib.redirect_stdout(said):
            schema.validate_cloudconfig_file(path, full_schema)
        verdict = {"ok": True, "errors": ""}
    except schema.SchemaValidationError as e:
        verdict = {"ok": False, "errors": str(e)}
    except RuntimeError as e:  # the CLI reports these as errors too
        verdict = {"ok": False, "errors": str(e)}
    if deprecations:
        listed = ", ".join(f"{p.path}: {p.message}" for p in deprecations)
        verdict = {"ok": False, "errors": "; ".join(filter(None, [verdict["errors"], f"deprecations: {listed}"]))}
    os.makedirs(os.path.join(outputs, k), exist_ok=True)
    with open(os.path.join(outputs, k, "schema.json"), "w", encoding="utf-8") as f:
        json.dump(verdict, f)
