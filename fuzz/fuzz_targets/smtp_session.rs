//! Arbitrary bytes into the sans-IO SMTP core, driven like the network shell.
//!
//! The first 8 bytes choose the policy (small limits, so that they are
//! reached), the chunking and the outcomes given to messages and AUTH
//! (`latrine_fuzz::SessionKnobs`); the rest is the client's side of the
//! dialog. Checked: `consumed` never exceeds the input, the driver loop always
//! ends, every reply is well-formed `\d\d\d[ -][^\r\n]*\r\n` lines, content
//! comes only inside a message and within the size limit, limits hold, and a
//! closed session stays closed.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    latrine_fuzz::smtp_session(data);
});
