//! Integration tests of the pure-Rust core (no Python needed):
//! `cargo test --test rust_tests`.
mod common;
mod format;
mod kernels;
mod search;
