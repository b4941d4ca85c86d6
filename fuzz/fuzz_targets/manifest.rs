//! Arbitrary bytes into `Manifest::from_json`: never a panic; whatever is
//! accepted is of schema major version 1, and `to_json` then `from_json`
//! gives it back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    latrine_fuzz::manifest(data);
});
