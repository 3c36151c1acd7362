//! Integration tests of the pure-Rust core (no Python needed):
//! `cargo test --test rust_tests`.
mod calibration;
mod collection;
mod common;
mod corruption;
mod craft;
mod decode;
mod filter;
mod format;
mod frozen;
mod kernels;
mod limits;
mod search;
mod spill;
