//! Property tests: no profile value can escape its quoting in YAML or in the provisioning script.
