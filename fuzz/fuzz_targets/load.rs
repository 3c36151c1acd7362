//! Raw bytes as an index file: header, table and manifest parsers and the
//! loader see exactly what an attacker could put on disk.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    svve_core_fuzz::run(data);
});
