//! Re-parsing a stored message for what the manifest does not carry: its
//! body text (for the campaign) and its URLs.
//!
//! Messages are attacker-made, so the MIME parser (mail-parser) is fenced in:
//!
//! - **Size.** Messages over `--max-parse-size` are not parsed at all (the
//!   listener's own limit is 10 MB by default); they are still counted and
//!   hashed, and the errors report says why their body is missing.
//! - **Nesting.** mail-parser parses nested `message/rfc822` parts without
//!   recursion, but dropping the result recurses once per level: a 2 MB
//!   message nested 60,000 deep overflows a thread's stack, which aborts the
//!   process (there is no catching that). The parsed message is therefore
//!   taken apart iteratively ([`crate::spool::attachments::teardown`]), and attached messages are
//!   searched for URLs with a heap stack, at most [`MAX_DEPTH`] deep.
//! - **Panics** are caught (`catch_unwind`) and reported for that message.
//! - **Time.** mail-parser cannot be interrupted, and its run time on a
//!   pathological input is not known in advance (linear on every input
//!   tried, 10 MB in well under a second, but a bug could loop). Each worker
//!   therefore parses on a companion thread and waits at most
//!   `--parse-timeout`; past it the message is reported, the companion is
//!   abandoned to finish (or spin) on its own, and a fresh one takes over.
//!   Abandoned threads are counted: past [`MAX_RUNAWAY`] of them no more
//!   messages are parsed, so a spool of poison cannot eat every core. They
//!   die with the process when the run ends.

use super::campaign::{self, Campaign};
use super::urls::{self, Urls};
use crate::spool::attachments::teardown;
use mail_parser::{Message, MessageParser, PartType};
use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

/// Parser threads left running past their timeout before parsing stops.
pub const MAX_RUNAWAY: usize = 8;
/// Stack of a companion thread.
const PARSER_STACK: usize = 64 * 1024 * 1024;
/// Name of the companion threads (the panic hook keeps them quiet).
pub const THREAD_NAME: &str = "latrine-parse";

/// What the body of a message gave.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BodyFacts {
    pub campaign: Option<Campaign>,
    /// Distinct URLs, sorted.
    pub urls: Vec<String>,
    /// Something worth reporting that did not stop the parse.
    pub note: Option<String>,
}

/// Parses `eml` and extracts the body facts. Not guarded: see [`Guarded`].
pub fn body_facts(eml: &[u8]) -> Result<BodyFacts, String> {
    let message = MessageParser::default()
        .parse(eml)
        .ok_or_else(|| "no message found (no header)".to_string())?;
    // Taken apart even if extraction panics: unwinding would drop it
    // recursively.
    let facts = catch_unwind(AssertUnwindSafe(|| facts_of(&message)));
    teardown(message);
    facts.map_err(|panic| {
        format!(
            "extracting the body panicked: {}",
            super::pipeline::panic_message(panic.as_ref())
        )
    })
}

/// How deep attached messages (`message/rfc822`) are searched for URLs.
pub const MAX_DEPTH: usize = 8;

/// The parts of `message` that are its body: text and HTML, each once.
/// mail-parser lists an HTML-only body among the text bodies too (and the
/// reverse), so the lists are merged and each part read as what it is.
fn body_parts(message: &Message<'_>) -> BTreeSet<u32> {
    message
        .text_body
        .iter()
        .chain(message.html_body.iter())
        .copied()
        .collect()
}

fn facts_of(message: &Message<'_>) -> BodyFacts {
    let mut found = Urls::default();
    let mut text = String::new();
    // The campaign is the message's own text; URLs come from attached
    // messages too (a forwarded phish, a bounce), without recursion.
    let mut stack = vec![(message, 0usize)];
    while let Some((m, depth)) = stack.pop() {
        let text_parts: BTreeSet<u32> = m.text_body.iter().copied().collect();
        for id in body_parts(m) {
            let Some(part) = m.parts.get(id as usize) else {
                continue;
            };
            let wanted = depth == 0 && text_parts.contains(&id) && text.len() < campaign::MAX_TEXT;
            if wanted && !text.is_empty() {
                text.push('\n');
            }
            match &part.body {
                PartType::Text(t) => {
                    urls::from_text(t, &mut found);
                    if wanted {
                        text.push_str(t);
                    }
                }
                PartType::Html(h) => {
                    let visible = urls::from_html(h, &mut found);
                    if wanted {
                        text.push_str(&visible);
                    }
                }
                _ => {}
            }
        }
        if depth + 1 < MAX_DEPTH {
            for part in m.parts.iter().rev() {
                if let PartType::Message(inner) = &part.body {
                    stack.push((inner, depth + 1));
                }
            }
        }
    }
    let note = (found.dropped > 0).then(|| {
        format!(
            "{} more distinct URLs past the limit of {} were not kept",
            found.dropped,
            urls::MAX_URLS
        )
    });
    BodyFacts {
        campaign: campaign::campaign(&text),
        urls: found.found.into_iter().collect(),
        note,
    }
}

/// A companion thread that parses, one message at a time.
struct Companion {
    jobs: SyncSender<Vec<u8>>,
    results: Receiver<Result<BodyFacts, String>>,
    /// Set when the worker gives up waiting: the thread then exits after
    /// the parse in hand, and takes itself off the runaway count.
    abandoned: Arc<AtomicBool>,
}

/// A worker's parser, with the time limit of the module documentation.
pub struct Guarded {
    timeout: Duration,
    companion: Option<Companion>,
    runaway: Arc<AtomicUsize>,
}

impl Guarded {
    /// `runaway` is shared by every worker's parser.
    pub fn new(timeout: Duration, runaway: Arc<AtomicUsize>) -> Guarded {
        Guarded {
            timeout,
            companion: None,
            runaway,
        }
    }

    fn companion(&mut self) -> Result<&Companion, String> {
        if self.companion.is_none() {
            let (job_tx, job_rx) = sync_channel::<Vec<u8>>(1);
            let (result_tx, result_rx) = sync_channel(1);
            let abandoned = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&abandoned);
            let runaway = Arc::clone(&self.runaway);
            std::thread::Builder::new()
                .name(THREAD_NAME.into())
                // Room for whatever mail-parser drops recursively while
                // unwinding from a panic (address space, not memory).
                .stack_size(PARSER_STACK)
                .spawn(move || {
                    for eml in job_rx {
                        let result = catch_unwind(AssertUnwindSafe(|| body_facts(&eml)))
                            .unwrap_or_else(|panic| {
                                Err(format!(
                                    "the MIME parser panicked: {}",
                                    super::pipeline::panic_message(panic.as_ref())
                                ))
                            });
                        if flag.load(Ordering::SeqCst) || result_tx.send(result).is_err() {
                            break;
                        }
                    }
                    // The worker sets the flag before letting go of the
                    // channels, so an abandoned thread always sees it here.
                    if flag.load(Ordering::SeqCst) {
                        runaway.fetch_sub(1, Ordering::SeqCst);
                    }
                })
                .map_err(|e| format!("cannot start a parser thread: {e}"))?;
            self.companion = Some(Companion {
                jobs: job_tx,
                results: result_rx,
                abandoned,
            });
        }
        self.companion
            .as_ref()
            .ok_or_else(|| "no parser thread".to_string())
    }

    /// Parses `eml` on the companion thread, waiting at most the timeout.
    pub fn parse(&mut self, eml: Vec<u8>) -> Result<BodyFacts, String> {
        let running = self.runaway.load(Ordering::SeqCst);
        if running >= MAX_RUNAWAY {
            return Err(format!(
                "not parsed: {running} earlier parses are still running past the timeout"
            ));
        }
        let timeout = self.timeout;
        let companion = self.companion()?;
        if companion.jobs.send(eml).is_err() {
            self.companion = None;
            return Err("the parser thread is gone".into());
        }
        match companion.results.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(c) = self.companion.take() {
                    self.runaway.fetch_add(1, Ordering::SeqCst);
                    c.abandoned.store(true, Ordering::SeqCst);
                }
                Err(format!(
                    "parsing took longer than {:.3} s; abandoned",
                    timeout.as_secs_f64()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.companion = None;
                Err("the parser thread is gone".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_html_bodies() {
        let eml = b"From: a@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\n\
Dear Bob,\r\nSee http://a.example/x?id=1 today\r\n--B\r\nContent-Type: text/html\r\n\r\n\
<p>Dear Bob,</p><p>See <a href=\"http://a.example/x?id=1&amp;h=2\">this</a> today</p>\r\n--B--\r\n";
        let facts = body_facts(eml).unwrap();
        assert_eq!(
            facts.urls,
            ["http://a.example/x?id=1", "http://a.example/x?id=1&h=2"]
        );
        assert_eq!(
            facts.campaign.unwrap().sample,
            "see http://a.example/x?<q> today"
        );
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let mut eml = b"Content-Type: message/rfc822\r\n\r\n".repeat(100_000);
        eml.extend_from_slice(b"Subject: x\r\n\r\nbody http://deep.example/\r\n");
        // A small stack, as a worker thread may have.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || body_facts(&eml).map(|f| f.urls))
            .unwrap();
        assert!(handle.join().unwrap().is_ok());
    }

    #[test]
    fn a_slow_parse_is_abandoned() {
        let runaway = Arc::new(AtomicUsize::new(0));
        let mut parser = Guarded::new(Duration::from_nanos(1), Arc::clone(&runaway));
        let big = b"Content-Type: text/html\r\n\r\n"
            .iter()
            .copied()
            .chain(b"<a href=http://x.example/>".repeat(400_000))
            .collect::<Vec<u8>>();
        let err = parser.parse(big).unwrap_err();
        assert!(err.contains("abandoned"), "{err}");
        // A fresh companion takes over.
        parser.timeout = Duration::from_secs(30);
        let ok = parser.parse(b"Subject: x\r\n\r\nhttp://y.example/\r\n".to_vec());
        assert_eq!(ok.unwrap().urls, ["http://y.example/"]);
        let start = std::time::Instant::now();
        while runaway.load(Ordering::SeqCst) > 0 {
            assert!(start.elapsed() < Duration::from_secs(30));
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
