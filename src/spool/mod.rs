//! The spool: latrine's on-disk evidence format. This documentation is the
//! format's specification; `listen` writes it, `analyze` and `verify` read it
//! through the same types ([`Manifest`]).
//!
//! # Layout
//!
//! ```text
//! <spool>/
//!   .incoming/<session-id>/              sessions being written (never copy these)
//!   <sensor>/<YYYY>/<MM>/<DD>/<session-id>/   sealed sessions (UTC date of the start)
//!     manifest.json                      written last; lists and hashes everything else
//!     transcript.log                     both directions of the dialog
//!     events.jsonl                       the session's events, one JSON object a line
//!     messages/<n>.eml                   message n (from 1), exactly as received
//!     attachments/<sha256>               each distinct attachment's decoded content
//!   <sensor>/denials/<YYYY-MM-DD>.log    connections the deny lists closed (see below)
//! ```
//!
//! - **Session ids** look like `20261127T162231.123456Z-9f3a0c1b2d4e5f60`: the
//!   UTC start to the microsecond, then 64 random bits in hex. They sort by
//!   time and do not collide across sensors or restarts.
//! - **Sealing.** A session is written under `.incoming/` and renamed into
//!   place, in one atomic `rename(2)`, only once `manifest.json` is complete.
//!   `rsync --exclude=.incoming` therefore never copies half a session, and
//!   nothing in a sealed directory is ever changed again.
//!   Only `latrine prune` deletes a sealed session, whole, and only once a
//!   byte-identical copy elsewhere verifies ([`crate::prune`]).
//! - **Names.** No path is ever made from client data: the sensor name is the
//!   operator's (checked: letters, digits, `.`, `_`, `-`), ids and message
//!   numbers are ours, attachments are named by their sha256. Files are
//!   created with `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600, directories 0700.
//!   Sealing walks `<sensor>/<YYYY>/<MM>/<DD>` without following links and
//!   never replaces a directory; a link there (or a linked `.incoming`)
//!   stops the seal or the start, with the path in the error.
//! - **Durability.** With `fsync` on (the default), the reply `250` to a
//!   message is sent only after the message file, the journal (which records
//!   the message) and the directory entries that lead to them
//!   (`messages/`, the session directory, `.incoming/`) are durable: each was
//!   synced by an `fdatasync`/`fsync` that *started after* the message was
//!   written. These syncs are group-committed ([`commit`]): a directory shared
//!   by many sessions is synced once for all the sessions that asked while
//!   its previous sync ran, and files are synced concurrently, so that their
//!   disk-cache flushes merge. Sealing, through the same committer, makes
//!   what is not yet durable in the session directory (transcript, journal,
//!   manifest, attachments, unacknowledged messages, the directories that
//!   gained entries) durable before the rename, and the rename after it.
//!   With `--no-fsync` nothing is synced: a crash of latrine loses nothing
//!   written, a power cut may.
//! - **Crash recovery.** At start, every directory left in `.incoming/` is
//!   sealed with `end_reason: "recovered"` and the flag `recovered`, from its
//!   journal and files. Nothing is deleted.
//!
//! # `transcript.log`
//!
//! A header line `# latrine transcript v1 session=<id>`, then one record a
//! line: `<seconds>.<micros> <dir> <bytes>` where `<dir>` is `C` (client),
//! `S` (server) or `M` (a note from latrine) and `<bytes>` is escaped:
//! printable ASCII as is, `\\` for a backslash, `\r` `\n` `\t`, and `\xHH` for
//! every other byte ([`crate::escape`]). Client bytes are cut after each LF.
//! Concatenating the unescaped `C` records gives every byte the client sent
//! outside message content. Message content is not repeated; instead:
//!
//! - `M message <n> begin messages/<n>.eml` where the content starts;
//! - `M message <n> end size=<stored> received=<bytes> sha256=<hex>
//!   [undoubled_dots=<o1>,<o2>...]` where it ended.
//!
//! - `M tls <mode> established <version> <cipher> client_hello=<hex>` or
//!   `M tls <mode> failed: <reason> client_hello=<hex>`: a TLS handshake and
//!   the bytes the client sent during it (at most 16 KiB), in hex. The TLS
//!   records themselves are not `C` records; after a handshake, `C` records
//!   hold the decrypted SMTP bytes.
//! - `M plaintext after STARTTLS, not executed:` before the `C` records of
//!   bytes pipelined after STARTTLS (an injection attempt).
//! - `M client bytes not processed:` before the `C` records of bytes the
//!   client sent that were never acted on (a partial line when the
//!   connection ended, commands pipelined after QUIT).
//!
//! For DATA, the wire bytes are the message file with a `.` put back before
//! every line (after CRLF, or at the start) that begins with `.`, and before
//! the lines at the `undoubled_dots` offsets, then `.\r\n`. Content past the
//! size limit is not kept (`received` > `size`).
//!
//! # `events.jsonl`
//!
//! The session's events ([`crate::events::EventRecord`]), one JSON object a
//! line: `at`, `sensor`, `session_id`, `client_ip`, `event` and the event's
//! fields. `event` is one of `session.connect`, `smtp.helo`, `smtp.mail`,
//! `smtp.rcpt`, `smtp.reset`, `smtp.error`, `smtp.auth`,
//! `smtp.starttls_injection`, `session.tls`, `message.begin`,
//! `message.stored`, `session.limit`, `session.closed`. The manifest is a
//! fold of these events; `--events` streams the same lines for all sessions,
//! and also `session.denied` (`client`, `server`, `listener`, `rule`) for a
//! connection the deny lists closed, with an empty `session_id`.
//!
//! # Denials: `<sensor>/denials/<YYYY-MM-DD>.log`
//!
//! A denied connection is closed before it becomes a session, so it has no
//! directory; it is counted instead, in one append-only text file per sensor
//! and UTC day ([`denials`]). The first line is
//! `# latrine denials v1 sensor=<sensor> date=<YYYY-MM-DD>`; every other line is
//!
//! ```text
//! <YYYY-MM-DDTHH:MMZ> <client ip> <rule> <count>
//! ```
//!
//! meaning `count` more connections (at least 1) from that address in that
//! UTC minute, under that rule: `cidr:<network>/<length>` (the deny file's
//! block, normalised), `country:<CC>`, or `allowed:country-unknown` for a
//! connection that was *allowed* because the country database did not know
//! its address. The same key may appear on several lines (counts are written
//! at most once a second and added up by readers); lines are in time order
//! within one write. The sensor counts in memory and appends whole lines with
//! one `write(2)` at once when idle, then at most once a second while denials
//! go on; a finished day's file is synced when the next day starts and the
//! last one at shutdown. So the file grows by at most one line per key per
//! second, and a flood from one address costs one line a second, not a
//! line a connection; a kill -9 loses at most the last second's counts, a
//! torn last line (no newline) is reported by `latrine verify` and skipped
//! by `analyze`. Only the current day's file is written: earlier ones are
//! final and can be shipped and pruned.
//!
//! # `manifest.json`
//!
//! All times are RFC 3339 UTC with microseconds (`2026-11-27T16:22:31.123456Z`).
//! Strings that came from the client (HELO names, addresses, commands) are
//! escaped with [`crate::escape::escape_text`]: readable UTF-8 is kept, `\` is
//! doubled, control and invalid bytes become `\r`, `\n`, `\t` or `\xHH`.
//!
//! | key | meaning |
//! |---|---|
//! | `schema` | `latrine.session/1`; readers refuse another major version |
//! | `session_id`, `sensor`, `latrine` | ids, and the version that wrote it |
//! | `started_at`, `ended_at` | connect and close times |
//! | `end_reason` | `quit`, `client_closed`, `timeout`, `limit`, `rejected` (we hung up on an HTTP request, as Postfix does), `shutdown`, `error`, `tls_failed`, `recovered` |
//! | `client` | `{ip, port}` from the socket, never from what the client said |
//! | `server` | `{ip, port, hostname, listener}` |
//! | `helo`, `helo_total` | HELO/EHLO arguments in order (first 100), and how many |
//! | `commands` | command lines received |
//! | `protocol_errors`, `protocol_errors_total` | `{at, command, reply}` for commands answered with an error (first 100), and how many |
//! | `tls` | the TLS handshake, if any: `mode` (`starttls`, `implicit`), `version`, `cipher`, `sni`, `alpn`, `offered_alpn`, `ja3`, `ja3_string`, `ja4` (the client's ClientHello), `ja3s`, `ja3s_string`, `ja4s` (the ServerHello latrine answered with, as scanners fingerprint it), `client_hello_bytes`, `error` (a failed handshake) |
//! | `starttls_injection_bytes` | plaintext pipelined after STARTTLS: in the transcript, never executed (flag `starttls_injection`) |
//! | `auth` | every AUTH exchange (first 100): `at`, `mechanism`, `username`, `password` (PLAIN, LOGIN), `authzid`, `challenge` and `digest` (CRAM-MD5: our challenge and the client's HMAC; NTLM: our server challenge in hex and the response as hashcat's NetNTLMv2 line `user::domain:challenge:ntproofstr:blob`), `domain` and `workstation` (NTLM), `raw` (the client's lines, escaped), `outcome` (`complete`, `cancelled`, `malformed`), `accepted` |
//! | `limits_hit` | limits the session reached: `message_size`, `recipients`, `line_length`, `errors`, `idle_timeout`, `session_time`, ... |
//! | `messages` | see below |
//! | `files` | `{path, size, sha256}` for every file in the directory but `manifest.json` |
//! | `flags` | `starttls_injection`, `recovered`, `journal_damaged`, `journal_missing`, `manifest_partial`, `extraction_failed`, `attachments_not_extracted` (a message over 32 MiB, or with more than 10,000 MIME boundary lines: headers from its header block only, see its `parse_error`) |
//!
//! Each message: `index`, `file`, `size` and `sha256` (of the file),
//! `mail_from`, `mail_params`, `rcpt_to` (list), `received_at`,
//! `received_size` (content bytes the client sent, kept or not), `truncated`
//! and `truncated_reason` (`size_limit`, `disconnected`, `abandoned`,
//! `write_error`, `interrupted`), `bare_lf`, `bare_cr`, `smuggling` (a lone
//! `.` next to a bare line ending), `chunked` (sent with BDAT),
//! `undoubled_dots`, `accepted` (whether the client got a 250), `queue_id`
//! (the id in that 250), `headers` {`subject`, `from`, `to`, `date`,
//! `message_id`, `x_mailer`} as decoded by mail-parser, `attachments`
//! (`filename` as the sender gave it, `content_type`, `size`, `md5`, `sha1`,
//! `sha256`, `file`, `depth` of `message/rfc822` nesting) and `parse_error`
//! when the message could not be parsed.
//!
//! # Checking a session
//!
//! `files` is enough: every listed file must exist with that size and sha256,
//! and no other file may exist besides `manifest.json`.

pub mod attachments;
pub mod batched;
pub mod commit;
pub mod denials;
pub mod manifest;
mod nofollow;
pub mod recover;
pub mod transcript;
pub mod writer;

pub use manifest::{Manifest, ManifestBuilder, SCHEMA};
pub use writer::{Durability, SessionWriter, Spool};
