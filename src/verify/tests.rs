//! Unit tests of the comparison: real probe output passes, and each fact, made wrong, fails.
