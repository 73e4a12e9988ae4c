//! Checking: syntax tree to the checked program.
