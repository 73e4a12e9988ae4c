//! Tokens of the Soufflé language.
