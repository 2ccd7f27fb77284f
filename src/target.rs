//! Placeholder: provider targets, user-data size limits and encodings; filled in by its author.
