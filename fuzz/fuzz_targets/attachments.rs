//! Arbitrary bytes into `latrine::spool::attachments::extract`: no panic, and
//! every attachment's size, depth and metadata sane.
//!
//! `extract` runs mail-parser (and latrine's own decoding) under
//! `catch_unwind`. libFuzzer's panic hook would abort on a panic even inside
//! it, so the hook is replaced by one that stays quiet inside `extract` and
//! aborts everywhere else. A panic caught inside `extract` is handled (the
//! message gets a `parse_error`), so it is not a crash; the input and the
//! panic message are saved under `fuzz/artifacts/attachments/mime-panic-*`
//! for the record (and to tell mail-parser's panics from latrine's).
//! With `LATRINE_FUZZ_CAUGHT_PANIC_ABORTS=1` they abort like any other panic,
//! so that libFuzzer's `-minimize_crash=1` can minimise such an input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::{Cell, RefCell};
use std::sync::Once;

thread_local! {
    static IN_EXTRACT: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        let strict = std::env::var_os("LATRINE_FUZZ_CAUGHT_PANIC_ABORTS").is_some_and(|v| v == "1");
        std::panic::set_hook(Box::new(move |info| {
            if IN_EXTRACT.with(Cell::get) && !strict {
                LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
                return;
            }
            default(info);
            std::process::abort();
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    IN_EXTRACT.with(|c| c.set(true));
    let parsed = latrine::spool::attachments::extract(data);
    IN_EXTRACT.with(|c| c.set(false));
    if let Err(e) = &parsed
        && e.contains("panicked")
    {
        save_caught_panic(data);
    }
    let _ = latrine_fuzz::check_attachments(data, parsed);
});

fn save_caught_panic(data: &[u8]) {
    use std::hash::{Hash, Hasher};
    let message = LAST_PANIC.with(|p| p.borrow().clone());
    // One file per panic site, not per input.
    let site = message.lines().next().unwrap_or("").to_string();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    site.hash(&mut h);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("artifacts/attachments");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("mime-panic-{:016x}", h.finish()));
    if !path.exists() {
        eprintln!(
            "caught panic inside extract: {message}\ninput saved to {}",
            path.display()
        );
        let _ = std::fs::write(&path, data);
        let _ = std::fs::write(path.with_extension("txt"), message);
    }
}
