//! The input with every checksum recomputed before loading, so mutations of
//! the manifest, shapes, offsets and payloads reach the checks behind the
//! CRCs (and files that pass them reach the query pipeline).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    svve_core_fuzz::reseal(&mut bytes);
    svve_core_fuzz::run(&bytes);
});
