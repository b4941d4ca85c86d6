//! `escape_ascii` / `escape_text` then `unescape` give back the exact bytes;
//! `escape_ascii` is printable ASCII; transcript records made as the writer
//! makes them parse back with `parse_record`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    latrine_fuzz::escape_roundtrip(data);
});
