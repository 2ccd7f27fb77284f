//! Placeholder: deterministic vfat cidata image; filled in by its author.
