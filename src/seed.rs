//! Placeholder: NoCloud seed contents (meta-data, network-config); filled in by its author.
