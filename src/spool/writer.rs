//! Writing one session into `.incoming/`, and sealing it into place.

use super::attachments;
use super::batched::BatchedFile;
use super::commit::{GroupCommit, SYNC_THREADS, Target};
use super::manifest::{AttachmentRecord, FileRecord, Manifest, ManifestBuilder};
use super::transcript::TranscriptWriter;
use crate::escape::hex;
use crate::events::{EndReason, Event, EventRecord, EventStream, StoredMessage};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use time::OffsetDateTime;

pub const INCOMING: &str = ".incoming";
pub const MANIFEST: &str = "manifest.json";
pub const TRANSCRIPT: &str = "transcript.log";
pub const JOURNAL: &str = "events.jsonl";

/// Whether to fsync before acknowledging a message and before sealing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A message answered with 250 survives a power cut.
    Fsync,
    /// Faster; a power cut may lose acknowledged messages (a crash does not).
    None,
}

/// A spool directory, as the listener writes it.
pub struct Spool {
    root: PathBuf,
    incoming: PathBuf,
    sensor: String,
    durability: Durability,
    /// Syncs many sessions' files together (with [`Durability::Fsync`]).
    committer: Option<GroupCommit>,
    /// The last directory sessions were sealed into whose parents' entries were synced.
    parents_synced: Mutex<Option<PathBuf>>,
    /// The day's directory, walked once without following links and kept
    /// open: sealing renames into it by descriptor.
    sealed_parent: Mutex<Option<OpenParent>>,
}

/// A directory sessions are sealed into, open.
struct OpenParent {
    /// Its path below the root.
    rel: PathBuf,
    dir: Arc<OwnedFd>,
    /// Device and inode when opened: the path must still name this directory.
    id: (u64, u64),
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("root", &self.root)
            .field("sensor", &self.sensor)
            .field("durability", &self.durability)
            .finish()
    }
}

/// Creates a file that must not exist yet, without following a symlink,
/// readable by its owner only: a planted link or file cannot redirect evidence.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates directories (owner-only) as needed.
pub fn create_dirs(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// A fresh session id: UTC start time to the microsecond, then 64 random
/// bits. Ids sort by time and do not collide across sensors or restarts.
pub fn new_session_id(started: OffsetDateTime) -> String {
    let mut random = [0u8; 8];
    // Without randomness, time plus the process id still keeps ids apart.
    if getrandom::fill(&mut random).is_err() {
        random[..4].copy_from_slice(&std::process::id().to_be_bytes());
    }
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}.{:06}Z-{}",
        started.year(),
        started.month() as u8,
        started.day(),
        started.hour(),
        started.minute(),
        started.second(),
        started.microsecond(),
        hex(&random)
    )
}

impl Spool {
    /// Opens (creating) `root` and its `.incoming` directory.
    pub fn open(root: &Path, sensor: &str, durability: Durability) -> io::Result<Spool> {
        let incoming = root.join(INCOMING);
        create_dirs(&incoming)?;
        // Sessions are written below `.incoming` by path: it must be ours.
        if fs::symlink_metadata(&incoming)?.file_type().is_symlink() {
            return Err(io::Error::other(format!(
                "{} is a symbolic link: not followed (evidence is never written through a link)",
                incoming.display()
            )));
        }
        let committer = match durability {
            Durability::Fsync => Some(GroupCommit::start(SYNC_THREADS)?),
            Durability::None => None,
        };
        Ok(Spool {
            root: root.to_path_buf(),
            incoming,
            sensor: sensor.to_string(),
            durability,
            committer,
            parents_synced: Mutex::new(None),
            sealed_parent: Mutex::new(None),
        })
    }

    /// Makes `targets` durable together with other sessions' (group
    /// commit); resolves once syncs covering all of them have completed.
    /// Without fsync, resolves at once.
    pub async fn commit(&self, targets: Vec<Target>) -> io::Result<()> {
        match &self.committer {
            Some(c) => c.commit(targets).await,
            None => Ok(()),
        }
    }

    /// [`commit`](Self::commit) from a blocking thread.
    pub fn commit_blocking(&self, targets: Vec<Target>) -> io::Result<()> {
        match &self.committer {
            Some(c) => c.commit_blocking(targets),
            None => Ok(()),
        }
    }

    /// What a rename into `sealed` changed: the entries of its parent and of
    /// `.incoming`; the first time in a process, the parent's own parents up
    /// to the spool's root too (they may just have been made).
    pub fn after_rename(&self, sealed: &Path) -> Vec<Target> {
        if self.durability == Durability::None {
            return Vec::new();
        }
        let parent = sealed.parent().unwrap_or(&self.root);
        let mut targets = vec![
            Target::Dir(parent.to_path_buf()),
            Target::Dir(self.incoming.clone()),
        ];
        let mut synced = self
            .parents_synced
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if synced.as_deref() != Some(parent) {
            let mut up = parent;
            while let Some(p) = up.parent().filter(|_| up != self.root) {
                targets.push(Target::Dir(p.to_path_buf()));
                up = p;
            }
            *synced = Some(parent.to_path_buf());
        }
        targets
    }

    /// The group commit's counters, when fsync is on.
    pub fn commit_stats(&self) -> Option<super::commit::Stats> {
        self.committer.as_ref().map(GroupCommit::stats)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn incoming(&self) -> &Path {
        &self.incoming
    }

    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Starts a session: creates its directory, transcript and journal, and
    /// records the connect event.
    pub fn begin(
        self: &Arc<Self>,
        started_at: OffsetDateTime,
        client_ip: String,
        connect: Event,
        stream: Option<EventStream>,
    ) -> io::Result<SessionWriter> {
        let id = new_session_id(started_at);
        let dir = self.incoming.join(&id);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let started = Instant::now();
        let transcript = TranscriptWriter::new(create_new(&dir.join(TRANSCRIPT))?, started, &id)?
            .reopenable(dir.join(TRANSCRIPT));
        let journal =
            BatchedFile::new(create_new(&dir.join(JOURNAL))?).reopenable(dir.join(JOURNAL));
        let mut writer = SessionWriter {
            spool: Arc::clone(self),
            builder: ManifestBuilder::new(&id, &self.sensor),
            id,
            dir,
            client_ip,
            transcript,
            journal,
            stream,
            message: None,
            messages: 0,
            dirs_synced: false,
        };
        writer.record_at(started_at, connect)?;
        Ok(writer)
    }

    /// The directory `rel` (below the root) open, for sealing into. Walked
    /// without following links (see [`super::nofollow`]) the first time; then
    /// reused while its path still names the same directory, itself not a
    /// link (one `stat` instead of a walk per seal).
    fn sealed_parent(&self, rel: &Path) -> io::Result<Arc<OwnedFd>> {
        let mut cached = self.sealed_parent.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = cached.as_ref().filter(|open| open.rel == rel)
            && let Ok(meta) = fs::symlink_metadata(self.root.join(rel))
            && meta.is_dir()
            && (meta.dev(), meta.ino()) == open.id
        {
            return Ok(Arc::clone(&open.dir));
        }
        *cached = None;
        let dir = super::nofollow::open_dirs_below(&self.root, rel)?;
        let meta = File::from(dir.try_clone()?).metadata()?;
        let dir = Arc::new(dir);
        *cached = Some(OpenParent {
            rel: rel.to_path_buf(),
            dir: Arc::clone(&dir),
            id: (meta.dev(), meta.ino()),
        });
        Ok(dir)
    }

    /// Where a sealed session lives: `<root>/<sensor>/<YYYY>/<MM>/<DD>/<id>`,
    /// by the UTC date at the start of `started_at` (`YYYY-MM-DD...`).
    pub fn sealed_dir(&self, sensor: &str, started_at: &str, id: &str) -> PathBuf {
        let date = started_at.get(..10).unwrap_or("1970-01-01");
        let mut parts = date.split('-');
        let (y, m, d) = (
            parts.next().unwrap_or("1970"),
            parts.next().unwrap_or("01"),
            parts.next().unwrap_or("01"),
        );
        self.root.join(sensor).join(y).join(m).join(d).join(id)
    }
}

/// The message being received.
struct OpenMessage {
    index: u32,
    file_name: String,
    out: BufWriter<File>,
    sha256: Sha256,
    size: u64,
    /// Set when a write failed: later content is dropped, the message is flagged.
    failed: bool,
}

/// One session being written. Plain writes go to buffers and the page cache
/// (cheap enough to do on the async task); fsync and sealing are blocking and
/// belong on a blocking thread.
pub struct SessionWriter {
    spool: Arc<Spool>,
    id: String,
    dir: PathBuf,
    client_ip: String,
    transcript: TranscriptWriter,
    journal: BatchedFile,
    stream: Option<EventStream>,
    builder: ManifestBuilder,
    message: Option<OpenMessage>,
    messages: u32,
    /// Whether the session's directory entries have been made durable.
    dirs_synced: bool,
}

impl SessionWriter {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn transcript(&mut self) -> &mut TranscriptWriter {
        &mut self.transcript
    }

    /// Records an event now: journal, manifest, event stream.
    pub fn record(&mut self, event: Event) -> io::Result<()> {
        self.record_at(crate::timestamp::now(), event)
    }

    fn record_at(&mut self, at: OffsetDateTime, event: Event) -> io::Result<()> {
        let record = EventRecord {
            at: crate::timestamp::rfc3339(at),
            sensor: self.spool.sensor.clone(),
            session_id: self.id.clone(),
            client_ip: self.client_ip.clone(),
            event,
        };
        self.builder.apply(&record);
        if let Some(stream) = &self.stream {
            stream.emit(&record);
        }
        self.journal.append(&record.to_line());
        Ok(())
    }

    /// Opens `messages/<n>.eml` for a message whose content begins.
    pub fn begin_message(&mut self) -> io::Result<()> {
        self.messages += 1;
        let index = self.messages;
        let file_name = format!("messages/{index}.eml");
        if index == 1 {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(self.dir.join("messages"))?;
        }
        let file = create_new(&self.dir.join(&file_name))?;
        self.transcript
            .note(&format!("message {index} begin {file_name}"))?;
        self.record(Event::MessageBegin {
            index,
            file: file_name.clone(),
        })?;
        self.message = Some(OpenMessage {
            index,
            file_name,
            out: BufWriter::with_capacity(64 * 1024, file),
            sha256: Sha256::new(),
            size: 0,
            failed: false,
        });
        Ok(())
    }

    pub fn has_open_message(&self) -> bool {
        self.message.is_some()
    }

    /// Appends content to the open message. A write error (disk full) does not
    /// end the session: the message is finished as truncated.
    pub fn message_content(&mut self, bytes: &[u8]) {
        let Some(m) = &mut self.message else { return };
        if m.failed || bytes.is_empty() {
            return;
        }
        match m.out.write_all(bytes) {
            Ok(()) => {
                m.sha256.update(bytes);
                m.size += bytes.len() as u64;
            }
            Err(e) => {
                tracing::warn!(session = %self.id, "message write failed: {e}");
                m.failed = true;
            }
        }
    }

    /// Closes the open message and describes it. `stored.size`, `sha256`,
    /// `file` and `index` are filled in here; the caller fills the rest.
    /// Returns the file, still open, for [`sync_message`].
    pub fn end_message(
        &mut self,
        mut stored: StoredMessage,
    ) -> io::Result<(StoredMessage, Option<File>)> {
        let Some(mut m) = self.message.take() else {
            return Err(io::Error::other("no open message"));
        };
        let flushed = if m.failed { Ok(()) } else { m.out.flush() };
        // Never flushed again after a failure (as dropping a BufWriter
        // would), so the file stays as it is described below.
        let (file, _unwritten) = m.out.into_parts();
        stored.index = m.index;
        stored.file = m.file_name.clone();
        stored.size = m.size;
        stored.sha256 = hex(&m.sha256.finalize());
        if flushed.is_err() || m.failed {
            stored.truncated = true;
            stored.truncated_reason = Some(crate::events::Truncation::WriteError);
            stored.accepted = false;
            // A failed write may have put part of its bytes in the file:
            // describe the file as it is.
            if let Ok((size, sha256)) = hash_file(&self.dir.join(&m.file_name)) {
                stored.size = size;
                stored.sha256 = sha256;
            }
        }
        self.transcript.note(&format!(
            "message {} end size={} received={} sha256={}{}",
            m.index,
            stored.size,
            stored.received_size,
            stored.sha256,
            if stored.undoubled_dots.is_empty() {
                String::new()
            } else {
                let offsets: Vec<String> =
                    stored.undoubled_dots.iter().map(u64::to_string).collect();
                format!(" undoubled_dots={}", offsets.join(","))
            }
        ))?;
        Ok((stored, Some(file)))
    }

    /// What a durable acknowledgement of the message needs synced: the
    /// message file, the journal (which records it), and the directories
    /// that hold them (the session's own the first time).
    pub fn sync_targets(&mut self, message: Option<File>) -> io::Result<Vec<Target>> {
        self.journal.flush()?;
        self.transcript.flush()?;
        let mut targets = Vec::with_capacity(5);
        // Without the message's file there is nothing to vouch for.
        targets.push(Target::File(
            message.ok_or_else(|| io::Error::other("message file not open"))?,
        ));
        targets.push(Target::File(self.journal.handle()?));
        targets.push(Target::Dir(self.dir.join("messages")));
        if !self.dirs_synced {
            targets.push(Target::Dir(self.dir.clone()));
            targets.push(Target::Dir(self.spool.incoming.clone()));
        }
        Ok(targets)
    }

    /// Says that the targets of [`sync_targets`](Self::sync_targets) were synced.
    pub fn synced(&mut self) {
        self.dirs_synced = true;
    }

    /// Hands buffered transcript, journal and message bytes to the OS, so
    /// that a killed process loses nothing it has read.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(m) = &mut self.message
            && !m.failed
            && let Err(e) = m.out.flush()
        {
            tracing::warn!(session = %self.id, "message write failed: {e}");
            m.failed = true;
        }
        self.transcript.flush()?;
        self.journal.flush()
    }

    /// An idle session lets go of its open files and buffers (see
    /// [`BatchedFile::park`]); they come back with the next batch. Not while
    /// a message is open.
    pub fn park(&mut self) -> io::Result<()> {
        if self.message.is_some() {
            return Ok(());
        }
        self.transcript.park()?;
        self.journal.park()
    }

    /// Finishes a message cut short (disconnect, shutdown) so that what
    /// arrived is kept and marked.
    pub fn abandon_message(&mut self, mut stored: StoredMessage) -> io::Result<()> {
        stored.truncated = true;
        stored.accepted = false;
        let (stored, _) = self.end_message(stored)?;
        self.record(Event::MessageStored(stored))
    }

    /// Ends the session: records `session.closed` and hands its bytes to the
    /// OS. Sealing follows: [`Closed::prepare`], then [`SealPlan`].
    pub fn close(mut self, reason: EndReason, commands: u64) -> io::Result<Closed> {
        self.record(Event::Closed { reason, commands })?;
        self.flush()?;
        let mut known = Vec::with_capacity(2);
        if let Some((size, sha256)) = self.transcript.digest() {
            known.push((TRANSCRIPT.to_string(), size, sha256));
        }
        if let Some((size, sha256)) = self.journal.digest() {
            known.push((JOURNAL.to_string(), size, sha256));
        }
        let open = match self.spool.durability {
            Durability::Fsync => vec![self.transcript.handle()?, self.journal.handle()?],
            Durability::None => Vec::new(),
        };
        Ok(Closed {
            spool: self.spool,
            dir: self.dir,
            builder: self.builder,
            known,
            open,
        })
    }

    /// Ends the session and seals it, blocking (tests, tools).
    pub fn close_and_seal(self, reason: EndReason, commands: u64) -> io::Result<PathBuf> {
        let spool = Arc::clone(&self.spool);
        let mut plan = self.close(reason, commands)?.prepare()?;
        spool.commit_blocking(plan.before_rename())?;
        let path = plan.rename()?;
        spool.commit_blocking(spool.after_rename(&path))?;
        Ok(path)
    }
}

/// A session that ended, not yet sealed.
pub struct Closed {
    spool: Arc<Spool>,
    dir: PathBuf,
    builder: ManifestBuilder,
    /// Files whose size and sha256 were computed while writing them.
    known: Vec<(String, u64, String)>,
    /// The transcript and journal, open, to be synced before the rename.
    open: Vec<File>,
}

impl Closed {
    /// Extracts attachments, lists and hashes every file and writes
    /// `manifest.json` last. Blocking; reads each message (bounded, see
    /// [`attachments::MAX_EXTRACT_SIZE`]).
    pub fn prepare(self) -> io::Result<SealPlan> {
        prepare(self.spool, self.dir, self.builder, self.known, self.open)
    }
}

/// A session directory whose manifest is written. With fsync on, sync
/// [`before_rename`](Self::before_rename), [`rename`](Self::rename), then
/// sync [`Spool::after_rename`].
pub struct SealPlan {
    spool: Arc<Spool>,
    dir: PathBuf,
    target: PathBuf,
    sync: Vec<Target>,
}

impl SealPlan {
    /// What is not yet durable in the session directory: the transcript,
    /// the journal, the manifest, new attachments, messages not synced for a
    /// `250`, and the directories that gained entries.
    pub fn before_rename(&mut self) -> Vec<Target> {
        std::mem::take(&mut self.sync)
    }

    /// Moves the session into place: it is sealed. Fails, leaving it in
    /// `.incoming` for recovery, if the place is taken.
    pub fn rename(self) -> io::Result<PathBuf> {
        // Walked and renamed into by descriptor: a link planted on the way
        // is refused, an existing session is never replaced.
        let parent = self
            .target
            .parent()
            .and_then(|p| p.strip_prefix(self.spool.root()).ok())
            .ok_or_else(|| {
                io::Error::other(format!("{} is outside the spool", self.target.display()))
            })?;
        let name = self
            .target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other("a session directory has no name"))?;
        let parent_dir = self.spool.sealed_parent(parent)?;
        super::nofollow::rename_into(&self.dir, &parent_dir, name)?;
        Ok(self.target)
    }
}

/// Seals a session directory in `.incoming` (crash recovery): extracts
/// attachments, lists and hashes every file, writes `manifest.json` last,
/// makes it all durable, then renames the directory into place. Until the
/// rename, readers never see the session. Blocking.
pub fn seal(spool: &Arc<Spool>, dir: &Path, builder: ManifestBuilder) -> io::Result<PathBuf> {
    let mut plan = prepare(
        Arc::clone(spool),
        dir.to_path_buf(),
        builder,
        Vec::new(),
        Vec::new(),
    )?;
    spool.commit_blocking(plan.before_rename())?;
    let path = plan.rename()?;
    spool.commit_blocking(spool.after_rename(&path))?;
    Ok(path)
}

fn prepare(
    spool: Arc<Spool>,
    dir: PathBuf,
    builder: ManifestBuilder,
    mut known: Vec<(String, u64, String)>,
    open: Vec<File>,
) -> io::Result<SealPlan> {
    let durable = spool.durability == Durability::Fsync;
    let mut manifest = builder.finish();
    add_message_details(&dir, &mut manifest, &mut known)?;
    manifest.files = list_files(&dir, &manifest, &known)?;
    let mut out = create_new(&dir.join(MANIFEST))?;
    out.write_all(&manifest.to_json())?;
    let mut sync = Vec::new();
    if durable {
        let has_open = !open.is_empty();
        sync.extend(open.into_iter().map(Target::File));
        sync.push(Target::File(out));
        let mut unsynced_message = false;
        for file in &manifest.files {
            // Accepted messages were synced before their 250 (by this
            // process: recovery, with nothing open, syncs everything).
            let acked = has_open
                && manifest
                    .messages
                    .iter()
                    .any(|m| m.accepted && m.file == file.path);
            let open = has_open && (file.path == TRANSCRIPT || file.path == JOURNAL);
            if !acked && !open {
                unsynced_message |= file.path.starts_with("messages/");
                sync.push(Target::FilePath(dir.join(&file.path)));
            }
        }
        if unsynced_message {
            sync.push(Target::Dir(dir.join("messages")));
        }
        if manifest
            .files
            .iter()
            .any(|f| f.path.starts_with("attachments/"))
        {
            sync.push(Target::Dir(dir.join("attachments")));
        }
        sync.push(Target::Dir(dir.clone()));
    }
    let target = spool.sealed_dir(&manifest.sensor, &manifest.started_at, &manifest.session_id);
    Ok(SealPlan {
        spool,
        dir,
        target,
        sync,
    })
}

/// Parses each stored message for headers and attachments and stores every
/// attachment once under `attachments/<sha256>`. The attachments written
/// here are added to `written`, so that they are not read back to be hashed.
fn add_message_details(
    dir: &Path,
    manifest: &mut Manifest,
    written: &mut Vec<(String, u64, String)>,
) -> io::Result<()> {
    let mut extraction_failed = false;
    let mut not_extracted = false;
    for message in &mut manifest.messages {
        if message.size > attachments::MAX_EXTRACT_SIZE {
            // Parsing needs the message in memory: a big one would take as
            // much. Its header block alone gives the headers; the message
            // itself is kept whole, and the manifest says what was skipped.
            match read_header_block(&dir.join(&message.file)) {
                Ok(head) => {
                    if let Ok(parsed) = attachments::extract(&head) {
                        message.headers = parsed.headers;
                    }
                }
                Err(_) => extraction_failed = true,
            }
            message.parse_error = Some(format!(
                "message of {} bytes is over the extraction limit of {} bytes: headers read from \
                 its header block, attachments not extracted (the message is stored whole)",
                message.size,
                attachments::MAX_EXTRACT_SIZE
            ));
            not_extracted = true;
            continue;
        }
        let eml = match read_capped(&dir.join(&message.file), message.size) {
            Ok(bytes) => bytes,
            Err(e) => {
                message.parse_error = Some(format!("cannot read message: {e}"));
                extraction_failed = true;
                continue;
            }
        };
        if attachments::too_many_parts(&eml) {
            // A part bomb: parsed whole, each part would cost a structure.
            let head = &eml[..eml.len().min(attachments::MAX_HEADER_BLOCK)];
            if let Ok(parsed) = attachments::extract(attachments::header_block(head)) {
                message.headers = parsed.headers;
            }
            message.parse_error = Some(format!(
                "message has more than {} MIME boundary lines: headers read from its header \
                 block, attachments not extracted (the message is stored whole)",
                attachments::MAX_PARTS
            ));
            not_extracted = true;
            continue;
        }
        let parsed = match attachments::extract(&eml) {
            Ok(parsed) => parsed,
            Err(e) => {
                message.parse_error = Some(e);
                continue;
            }
        };
        message.headers = parsed.headers;
        for attachment in parsed.attachments {
            let sha256 = hex(&Sha256::digest(&attachment.content));
            let file = format!("attachments/{sha256}");
            let path = dir.join(&file);
            if !path.exists() {
                create_dirs(&dir.join("attachments"))?;
                match create_new(&path) {
                    Ok(mut out) => {
                        out.write_all(&attachment.content)?;
                        let size = attachment.content.len() as u64;
                        written.push((file.clone(), size, sha256.clone()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
            }
            message.attachments.push(AttachmentRecord {
                filename: attachment.filename,
                content_type: attachment.content_type,
                size: attachment.content.len() as u64,
                md5: hex(&Md5::digest(&attachment.content)),
                sha1: hex(&Sha1::digest(&attachment.content)),
                sha256,
                file,
                depth: attachment.depth,
            });
        }
        if parsed.skipped > 0 {
            message.parse_error = Some(format!(
                "{} attachments past the limit of {} were not extracted",
                parsed.skipped,
                attachments::MAX_ATTACHMENTS
            ));
        }
    }
    if extraction_failed {
        manifest.flags.push("extraction_failed".into());
    }
    if not_extracted {
        manifest.flags.push("attachments_not_extracted".into());
    }
    Ok(())
}

/// Reads a file, at most `expected + 1` bytes: the manifest says how big it
/// should be, and a file that grew is not read without bound.
fn read_capped(path: &Path, expected: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut out = Vec::with_capacity(expected as usize);
    file.take(expected + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// The start of a message up to and including the blank line that ends its
/// header block, read at most [`attachments::MAX_HEADER_BLOCK`] bytes far.
fn read_header_block(path: &Path) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut head = Vec::new();
    file.take(attachments::MAX_HEADER_BLOCK as u64)
        .read_to_end(&mut head)?;
    let end = attachments::header_block(&head).len();
    head.truncate(end);
    Ok(head)
}

/// Every regular file under `dir` (but the manifest), sorted, with size and
/// sha256. Messages reuse the hash computed while they were written.
fn list_files(
    dir: &Path,
    manifest: &Manifest,
    known: &[(String, u64, String)],
) -> io::Result<Vec<FileRecord>> {
    // Looked up once per file: a session may hold thousands of messages.
    let by_path: HashMap<&str, (u64, &str)> = known
        .iter()
        .map(|(path, size, sha256)| (path.as_str(), (*size, sha256.as_str())))
        .chain(
            manifest
                .messages
                .iter()
                .map(|m| (m.file.as_str(), (m.size, m.sha256.as_str()))),
        )
        .collect();
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(dir.join(&rel))? {
            let entry = entry?;
            let rel_path = rel.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(rel_path);
                continue;
            }
            let path_text = rel_path.to_string_lossy().replace('\\', "/");
            if path_text == MANIFEST || !kind.is_file() {
                continue;
            }
            let len = entry.metadata()?.len();
            let (size, sha256) = match by_path.get(path_text.as_str()) {
                Some(&(size, sha256)) if size == len => (size, sha256.to_string()),
                _ => hash_file(&dir.join(&rel_path))?,
            };
            files.push(FileRecord {
                path: path_text,
                size,
                sha256,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Size and sha256 of a file, streamed.
pub fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex(&hasher.finalize())))
}
