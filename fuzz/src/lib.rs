//! Fuzz bodies for relay's message parsers.
#![forbid(unsafe_code)]
