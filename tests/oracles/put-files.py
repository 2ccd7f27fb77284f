"""Writes a user-data's write_files into the throwaway root as cloud-init does (see kiln_files.py).

usage: put-files.py IN OUT PHASE CHOWN
  PHASE  init (write-files: entries not deferred), deferred (write-files-deferred) or all
  CHOWN  1 to apply owners as cloud-init does, 0 to leave every file to root
"""

import sys

import kiln_files

kiln_files.put_files(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1")
