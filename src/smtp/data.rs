//! The DATA phase: finds the end of a message and removes dot-stuffing,
//! streaming, whatever the chunk boundaries.
//!
//! Rules, chosen for evidence rather than leniency:
//! - The message ends only at `<CRLF>.<CRLF>` (RFC 5321 4.1.1.4). A `.` line
//!   ended or preceded by a bare LF or bare CR does not end it: that difference
//!   between servers is what SMTP smuggling exploits, so it is kept verbatim and
//!   flagged as [`DataFlags::smuggling`].
//! - Only a line that starts after a CRLF (or at the start of the data) is a line
//!   for dot-stuffing. Its leading `.` is removed (RFC 5321 4.5.2). A removed dot
//!   that was not doubled (`.x` instead of `..x`) is reported with its offset, so
//!   that the exact bytes on the wire can be rebuilt from the stored message.
//! - Bare LF and bare CR are kept exactly and flagged.
//! - Past `max_size` stored bytes, content is dropped but the stream is still
//!   parsed to its end, so that the dialog stays in sync.

use memchr::memchr2;

/// What the data stream looked like, for the manifest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataFlags {
    /// A LF not preceded by CR.
    pub bare_lf: bool,
    /// A CR not followed by LF.
    pub bare_cr: bool,
    /// A lone `.` line next to a bare line ending: an SMTP smuggling attempt.
    pub smuggling: bool,
}

/// Where the scanner is, relative to line starts and the end marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Inside a line.
    Middle,
    /// Just after a CR inside a line (it may be a CRLF or a bare CR).
    Cr,
    /// At the start of a line (after CRLF, or at the start of the data).
    LineStart,
    /// A `.` at a line start, not yet emitted.
    Dot,
    /// `.` then CR at a line start: the end marker if LF follows.
    DotCr,
}

/// The last five raw bytes, enough to see `<EOL>.<EOL>` with either EOL bare.
#[derive(Debug, Clone, Copy)]
struct Window([u8; 5]);

impl Window {
    /// The data starts right after the DATA command's CRLF.
    fn new() -> Window {
        Window([0, 0, 0, b'\r', b'\n'])
    }

    fn push(&mut self, b: u8) {
        self.0.copy_within(1.., 0);
        self.0[4] = b;
    }

    fn push_run(&mut self, run: &[u8]) {
        for &b in &run[run.len().saturating_sub(5)..] {
            self.push(b);
        }
    }

    /// Whether the newest byte completes a lone dot line with a bare ending
    /// on either side. The one legitimate form, `<CRLF>.<CRLF>`, never matches.
    fn is_smuggling(&self) -> bool {
        let w = &self.0;
        let eol = |b: u8| b == b'\r' || b == b'\n';
        matches!(&w[2..], b"\n.\n" | b"\r.\n")
            || (eol(w[1]) && w[2] == b'.' && w[3] == b'\r' && w[4] != b'\n')
            || &w[1..] == b"\r.\r\n"
            || (&w[1..] == b"\n.\r\n" && w[0] != b'\r')
    }
}

/// Streams one message's DATA content.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    scan: Scan,
    max_size: u64,
    /// Bytes of message content seen (after unstuffing), stored or not.
    size: u64,
    flags: DataFlags,
    window: Window,
    undoubled_dots: Vec<u64>,
    undoubled_dots_total: u64,
}

/// How many undoubled-dot offsets are kept per message; past that only the
/// count grows, so that a hostile client cannot grow memory.
pub const MAX_UNDOUBLED_DOTS: usize = 1024;

/// The result of feeding bytes into a [`DataReceiver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes consumed.
    pub consumed: usize,
    /// Whether the end marker was consumed.
    pub finished: bool,
}

/// Everything known about a message once its end marker has been read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSummary {
    /// Content size after unstuffing, including bytes dropped past the limit.
    pub size: u64,
    /// Bytes kept (at most the size limit).
    pub stored: u64,
    /// Whether content past the size limit was dropped.
    pub over_limit: bool,
    pub flags: DataFlags,
    /// Offsets, in the stored message, of lines whose leading dot was removed
    /// although it was not doubled.
    pub undoubled_dots: Vec<u64>,
    pub undoubled_dots_total: u64,
}

impl DataReceiver {
    pub fn new(max_size: u64) -> DataReceiver {
        DataReceiver {
            scan: Scan::LineStart,
            max_size,
            size: 0,
            flags: DataFlags::default(),
            window: Window::new(),
            undoubled_dots: Vec::new(),
            undoubled_dots_total: 0,
        }
    }

    /// Consumes `input` up to and including the end marker, appending the
    /// content to keep to `content`.
    pub fn feed(&mut self, input: &[u8], content: &mut Vec<u8>) -> Fed {
        let mut i = 0;
        while i < input.len() {
            if self.scan == Scan::Middle {
                // Fast path: copy up to the next CR or LF in one go. No smuggling
                // pattern can complete inside such a run.
                let run = memchr2(b'\r', b'\n', &input[i..]).unwrap_or(input.len() - i);
                if run > 0 {
                    self.emit(&input[i..i + run], content);
                    self.window.push_run(&input[i..i + run]);
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            i += 1;
            self.window.push(b);
            if self.window.is_smuggling() {
                self.flags.smuggling = true;
            }
            match (self.scan, b) {
                (Scan::LineStart, b'.') => self.scan = Scan::Dot,
                (Scan::Dot, b'\r') => self.scan = Scan::DotCr,
                (Scan::DotCr, b'\n') => {
                    return Fed {
                        consumed: i,
                        finished: true,
                    };
                }
                (Scan::DotCr, other) => {
                    // `.` then a bare CR: not the end. The line (which ends
                    // only at CRLF) has more characters, so the dot is removed
                    // like any other undoubled one; the window flags smuggling.
                    self.flags.bare_cr = true;
                    self.undoubled_dot();
                    self.emit(b"\r", content);
                    self.inside_line(other, content);
                }
                (Scan::Dot, b'\n') => {
                    // `.` then a bare LF: the same rule.
                    self.flags.bare_lf = true;
                    self.undoubled_dot();
                    self.emit(b"\n", content);
                    self.scan = Scan::Middle;
                }
                (Scan::Dot, b'.') => {
                    // A doubled dot: the first one was stuffing.
                    self.emit(b".", content);
                    self.scan = Scan::Middle;
                }
                (Scan::Dot, other) => {
                    self.undoubled_dot();
                    self.emit(&[other], content);
                    self.scan = Scan::Middle;
                }
                (Scan::Cr, b'\n') => {
                    self.emit(b"\n", content);
                    self.scan = Scan::LineStart;
                }
                (Scan::Cr, other) => {
                    self.flags.bare_cr = true;
                    self.inside_line(other, content);
                }
                (Scan::LineStart | Scan::Middle, other) => self.inside_line(other, content),
            }
        }
        Fed {
            consumed: input.len(),
            finished: false,
        }
    }

    /// One byte inside a line (not at a line start).
    fn inside_line(&mut self, b: u8, content: &mut Vec<u8>) {
        self.emit(&[b], content);
        self.scan = match b {
            b'\r' => Scan::Cr,
            b'\n' => {
                self.flags.bare_lf = true;
                Scan::Middle
            }
            _ => Scan::Middle,
        };
    }

    /// A line-start dot was removed although it was not doubled: remember
    /// where, so that the wire bytes can be rebuilt. Offsets past the kept
    /// content are useless (that content is gone) and not listed.
    fn undoubled_dot(&mut self) {
        self.undoubled_dots_total += 1;
        if self.undoubled_dots.len() < MAX_UNDOUBLED_DOTS && self.size < self.max_size {
            self.undoubled_dots.push(self.size);
        }
    }

    fn emit(&mut self, bytes: &[u8], content: &mut Vec<u8>) {
        let room = self.max_size.saturating_sub(self.size);
        let keep = bytes.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        content.extend_from_slice(&bytes[..keep]);
        self.size += bytes.len() as u64;
    }

    /// Content bytes seen so far (after unstuffing).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What the stream looked like, also for a message cut short.
    pub fn summary(&self) -> DataSummary {
        let mut flags = self.flags;
        // A trailing CR at the end of the stream is bare.
        if self.scan == Scan::Cr {
            flags.bare_cr = true;
        }
        DataSummary {
            size: self.size,
            stored: self.size.min(self.max_size),
            over_limit: self.size > self.max_size,
            flags,
            undoubled_dots: self.undoubled_dots.clone(),
            undoubled_dots_total: self.undoubled_dots_total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in chunks of `chunk` bytes; returns content, consumed, finished.
    fn run(input: &[u8], chunk: usize, max: u64) -> (Vec<u8>, usize, bool, DataSummary) {
        let mut rx = DataReceiver::new(max);
        let mut content = Vec::new();
        let mut consumed = 0;
        for piece in input.chunks(chunk) {
            let fed = rx.feed(piece, &mut content);
            consumed += fed.consumed;
            if fed.finished {
                return (content, consumed, true, rx.summary());
            }
        }
        (content, consumed, false, rx.summary())
    }

    #[test]
    fn ends_at_crlf_dot_crlf_in_any_chunking() {
        let input = b"Subject: x\r\n\r\nbody\r\n..stuffed\r\n.\r\nMAIL FROM:<a@b>\r\n";
        for chunk in 1..input.len() {
            let (content, consumed, finished, s) = run(input, chunk, 1 << 20);
            assert!(finished, "chunk {chunk}");
            assert_eq!(content, b"Subject: x\r\n\r\nbody\r\n.stuffed\r\n");
            assert_eq!(&input[consumed..], b"MAIL FROM:<a@b>\r\n");
            assert_eq!(s.flags, DataFlags::default());
            assert!(s.undoubled_dots.is_empty());
        }
    }

    #[test]
    fn empty_message() {
        let (content, consumed, finished, _) = run(b".\r\nQUIT\r\n", 64, 100);
        assert!(finished);
        assert!(content.is_empty());
        assert_eq!(consumed, 3);
    }

    #[test]
    fn bare_lf_is_kept_and_does_not_end() {
        let input = b"a\nb\n.\nc\r\n.\r\n";
        let (content, _, finished, s) = run(input, 3, 1 << 20);
        assert!(finished);
        // A dot after a bare LF does not start a line: it is kept.
        assert_eq!(content, b"a\nb\n.\nc\r\n");
        assert!(s.flags.bare_lf);
        assert!(s.flags.smuggling);
    }

    #[test]
    fn lf_dot_crlf_is_smuggling() {
        let (content, _, finished, s) = run(b"x\n.\r\nMAIL FROM:<e@vil>\r\n\r\n.\r\n", 5, 1 << 20);
        assert!(finished);
        assert!(s.flags.smuggling && s.flags.bare_lf);
        assert_eq!(content, b"x\n.\r\nMAIL FROM:<e@vil>\r\n\r\n");
    }

    #[test]
    fn crlf_dot_lf_is_smuggling_and_bare_cr_is_flagged() {
        let (content, _, finished, s) = run(b"x\r\n.\ny\rz\r\n.\r\n", 1, 1 << 20);
        assert!(finished);
        // The line-start dot before the bare LF is removed and its offset kept.
        assert_eq!(content, b"x\r\n\ny\rz\r\n");
        assert_eq!(s.undoubled_dots, vec![3]);
        assert!(s.flags.smuggling && s.flags.bare_cr && s.flags.bare_lf);
    }

    #[test]
    fn ordinary_message_is_not_smuggling() {
        let (_, _, _, s) = run(b"a\r\n.\r\n", 1, 100);
        assert!(!s.flags.smuggling);
        let (_, _, _, s) = run(b"a\r\n..b\r\n.c\r\n.\r\n", 2, 100);
        assert!(!s.flags.smuggling);
    }

    #[test]
    fn undoubled_dots_are_recorded() {
        let (content, _, _, s) = run(b"a\r\n.b\r\n..c\r\n.\r\n", 4, 100);
        assert_eq!(content, b"a\r\nb\r\n.c\r\n");
        assert_eq!(s.undoubled_dots, vec![3]);
    }

    #[test]
    fn size_limit_keeps_prefix_and_stays_in_sync() {
        let mut input = vec![b'x'; 1000];
        input.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
        let (content, consumed, finished, s) = run(&input, 7, 100);
        assert!(finished);
        assert_eq!(content.len(), 100);
        assert!(s.over_limit);
        assert_eq!(s.size, 1002);
        assert_eq!(&input[consumed..], b"QUIT\r\n");
    }

    #[test]
    fn unfinished_stream_reports_what_it_saw() {
        let (content, consumed, finished, s) = run(b"partial\r\nline\r", 3, 100);
        assert!(!finished);
        assert_eq!(consumed, 14);
        assert_eq!(content, b"partial\r\nline\r");
        assert!(s.flags.bare_cr);
    }
}
