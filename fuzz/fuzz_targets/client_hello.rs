//! Arbitrary bytes into the ClientHello parser; JA3 and JA4 of anything it
//! accepts are well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    latrine_fuzz::client_hello(data);
});
