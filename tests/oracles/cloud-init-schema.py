"""cloud-init oracle, every input in one process: the release's cloud-init (22.4.2) validates each
user-data with the code `cloud-init schema --config-file F` runs (cloudinit.config.schema:
handle_schema_args → validate_cloudconfig_file against get_schema()), without a Python start per file.

in:  <k>/user-data
out: <k>/schema.json: {"ok": bool, "errors": text}
"""

import json
import os
import sys

from cloudinit.config import schema

inputs, outputs = sys.argv[1], sys.argv[2]
full_schema = schema.get_schema()
for k in sorted(os.listdir(inputs)):
    path = os.path.join(inputs, k, "user-data")
    try:
        schema.validate_cloudconfig_file(path, full_schema)
        verdict = {"ok": True, "errors": ""}
    except schema.SchemaValidationError as e:
        verdict = {"ok": False, "errors": str(e)}
    except RuntimeError as e:  # the CLI reports these as errors too
        verdict = {"ok": False, "errors": str(e)}
    os.makedirs(os.path.join(outputs, k), exist_ok=True)
    with open(os.path.join(outputs, k, "schema.json"), "w", encoding="utf-8") as f:
        json.dump(verdict, f)
