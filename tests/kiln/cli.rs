//! The binary as users run it: exit codes, stdout/stderr discipline, 0600 output, no partial output.
