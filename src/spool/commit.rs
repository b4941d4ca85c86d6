//! Group commit: many sessions' writes made durable together.
//!
//! A session whose message is about to be answered `250`, or that is about
//! to be sealed, hands its [`Target`]s to the [`GroupCommit`] and waits; it is
//! answered once every one of its targets has been synced by a sync that
//! *started after* it asked, or with the first error.
//!
//! - **Directories are shared.** Every session's first message needs
//!   `.incoming/` synced, every seal the day's directory. One sync of a
//!   directory runs at a time; requests that arrive meanwhile wait together
//!   for the next one, which starts as soon as the running one ends and
//!   answers all of them. Under load, one `fsync` of `.incoming/` serves
//!   every session that arrived while the previous one ran.
//! - **Files are synced concurrently**, on a pool of sync threads. Without a
//!   file-system journal to merge them (ext4 without a journal, as on this
//!   project's test machines), each `fsync` ends with a flush of the disk's
//!   cache; flushes in flight at the same time are merged by the block layer,
//!   flushes issued one after another are not. With a journal, concurrent
//!   `fsync`s join one journal commit.
//!
//! `syncfs(2)` would cover a whole batch in one call, but it writes back every
//! dirty page of the file system, other programs' too: measured here while
//! another process wrote a 3 GB spool, sealing through `syncfs` halved the
//! listener's rate. This committer syncs only the spool's own files.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use tokio::sync::oneshot;

/// Sync threads: enough for a burst of concurrent sessions to have their
/// flushes in flight together.
pub const SYNC_THREADS: usize = 8;

/// Something to make durable.
#[derive(Debug)]
pub enum Target {
    /// An open file: `fdatasync` (its content and size).
    File(File),
    /// A file by path, opened read-only without following links: `fdatasync`.
    FilePath(PathBuf),
    /// A directory: `fsync`, so that the entries made in it survive.
    Dir(PathBuf),
}

impl Target {
    /// Syncs for real.
    pub fn sync(&self) -> io::Result<()> {
        match self {
            Target::File(file) => file.sync_data(),
            Target::FilePath(path) => open_read(path, 0)?.sync_data(),
            Target::Dir(path) => open_read(path, libc::O_DIRECTORY)?.sync_all(),
        }
    }
}

fn open_read(path: &std::path::Path, flags: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | flags)
        .open(path)
}

/// How targets are synced: [`Target::sync`] for real; tests substitute one
/// that records and can hold syncs back.
pub type SyncFn = Arc<dyn Fn(&Target) -> io::Result<()> + Send + Sync>;

/// Where an answer goes: an async task or a blocked thread.
enum Waiter {
    Task(oneshot::Sender<io::Result<()>>),
    Thread(mpsc::SyncSender<io::Result<()>>),
}

impl Waiter {
    fn answer(self, result: io::Result<()>) {
        let _ = match self {
            Waiter::Task(tx) => tx.send(result).map_err(drop),
            Waiter::Thread(tx) => tx.send(result).map_err(drop),
        };
    }
}

fn stopped() -> io::Error {
    io::Error::other("the committer has stopped")
}

/// One request: answered when its last target is done.
struct Request {
    remaining: AtomicUsize,
    outcome: Mutex<(Option<io::Error>, Option<Waiter>)>,
}

impl Request {
    fn target_done(&self, result: &io::Result<()>) {
        let mut outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = result
            && outcome.0.is_none()
        {
            outcome.0 = Some(io::Error::new(e.kind(), e.to_string()));
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let result = match outcome.0.take() {
                Some(e) => Err(e),
                None => Ok(()),
            };
            if let Some(waiter) = outcome.1.take() {
                waiter.answer(result);
            }
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Work for the sync threads.
#[derive(Default)]
struct Queues {
    jobs: VecDeque<Job>,
    closed: bool,
}

/// A directory's syncs: at most one runs; who asked meanwhile waits for the next.
#[derive(Default)]
struct DirState {
    running: bool,
    waiting: Vec<Arc<Request>>,
}

struct Inner {
    queues: Mutex<Queues>,
    work: Condvar,
    dirs: Mutex<HashMap<PathBuf, DirState>>,
    sync: SyncFn,
    /// Directory syncs run, and requests they answered (for the statistics).
    dir_syncs: AtomicUsize,
    dir_waiters: AtomicUsize,
}

/// The committer: a pool of sync threads and the directories' state.
pub struct GroupCommit {
    inner: Arc<Inner>,
}

/// Counters since the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Directory syncs run.
    pub dir_syncs: usize,
    /// Directory targets they served (more than `dir_syncs`: shared syncs).
    pub dir_waiters: usize,
}

impl GroupCommit {
    /// Starts `threads` sync threads that sync for real.
    pub fn start(threads: usize) -> io::Result<GroupCommit> {
        GroupCommit::with_sync(threads, Arc::new(Target::sync))
    }

    /// Starts with a sync function of the caller's (tests).
    pub fn with_sync(threads: usize, sync: SyncFn) -> io::Result<GroupCommit> {
        let inner = Arc::new(Inner {
            queues: Mutex::new(Queues::default()),
            work: Condvar::new(),
            dirs: Mutex::new(HashMap::new()),
            sync,
            dir_syncs: AtomicUsize::new(0),
            dir_waiters: AtomicUsize::new(0),
        });
        for i in 0..threads.max(1) {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("latrine-sync-{i}"))
                .stack_size(128 * 1024)
                .spawn(move || worker(&inner))?;
        }
        Ok(GroupCommit { inner })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            dir_syncs: self.inner.dir_syncs.load(Ordering::Relaxed),
            dir_waiters: self.inner.dir_waiters.load(Ordering::Relaxed),
        }
    }

    /// Makes `targets` durable; resolves once syncs that started after this
    /// call have covered all of them.
    pub async fn commit(&self, targets: Vec<Target>) -> io::Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.submit(targets, Waiter::Task(tx));
        rx.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// [`commit`](Self::commit), blocking the calling thread.
    pub fn commit_blocking(&self, targets: Vec<Target>) -> io::Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(targets, Waiter::Thread(tx));
        rx.recv().unwrap_or_else(|_| Err(stopped()))
    }

    fn submit(&self, targets: Vec<Target>, waiter: Waiter) {
        let request = Arc::new(Request {
            remaining: AtomicUsize::new(targets.len()),
            outcome: Mutex::new((None, Some(waiter))),
        });
        for target in targets {
            match target {
                Target::Dir(path) => self.inner.need_dir(path, Arc::clone(&request)),
                file => {
                    let inner = Arc::clone(&self.inner);
                    let request = Arc::clone(&request);
                    self.inner
                        .push(Box::new(move || request.target_done(&(inner.sync)(&file))));
                }
            }
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.inner
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed = true;
        self.inner.work.notify_all();
    }
}

impl Inner {
    fn push(self: &Arc<Self>, job: Job) {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        if queues.closed {
            drop(queues);
            // Run it here rather than lose it.
            job();
            return;
        }
        queues.jobs.push_back(job);
        drop(queues);
        self.work.notify_one();
    }

    /// Registers a request's need for a sync of `path` that starts after now.
    fn need_dir(self: &Arc<Self>, path: PathBuf, request: Arc<Request>) {
        let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
        let state = dirs.entry(path.clone()).or_default();
        state.waiting.push(request);
        if !state.running {
            state.running = true;
            drop(dirs);
            self.start_dir_sync(path);
        }
    }

    /// Syncs `path` for everyone waiting now; then, if more came meanwhile,
    /// again for them.
    fn start_dir_sync(self: &Arc<Self>, path: PathBuf) {
        let waiters = {
            let mut dirs = self.dirs.lock().unwrap_or_else(|e| e.into_inner());
            match dirs.get_mut(&path) {
                Some(state) => std::mem::take(&mut state.waiting),
                None => return,
            }
        };
        let inner = Arc::clone(self);
        self.push(Box::new(move || {
            let result = (inner.sync)(&Target::Dir(path.clone()));
            inner.dir_syncs.fetch_add(1, Ordering::Relaxed);
            inner
                .dir_waiters
                .fetch_add(waiters.len(), Ordering::Relaxed);
            for request in &waiters {
                request.target_done(&result);
            }
            let again = {
                let mut dirs = inner.dirs.lock().unwrap_or_else(|e| e.into_inner());
                match dirs.get_mut(&path) {
                    Some(state) if !state.waiting.is_empty() => true,
                    _ => {
                        dirs.remove(&path);
                        false
                    }
                }
            };
            if again {
                inner.start_dir_sync(path);
            }
        }));
    }
}

fn worker(inner: &Inner) {
    loop {
        let job = {
            let mut queues = inner.queues.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = queues.jobs.pop_front() {
                    break job;
                }
                if queues.closed {
                    return;
                }
                queues = inner.work.wait(queues).unwrap_or_else(|e| e.into_inner());
            }
        };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    /// A sync function that records what it synced and holds every sync back
    /// until the gate opens.
    struct Gate {
        synced: Mutex<Vec<PathBuf>>,
        open: AtomicBool,
        calls: AtomicUsize,
    }

    fn gated(fail: Option<&'static str>) -> (Arc<Gate>, SyncFn) {
        let gate = Arc::new(Gate {
            synced: Mutex::new(Vec::new()),
            open: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
        });
        let g = Arc::clone(&gate);
        let sync: SyncFn = Arc::new(move |target: &Target| {
            g.calls.fetch_add(1, Ordering::SeqCst);
            while !g.open.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let path = match target {
                Target::Dir(p) | Target::FilePath(p) => p.clone(),
                Target::File(_) => PathBuf::from("<file>"),
            };
            if fail.map(PathBuf::from).as_ref() == Some(&path) {
                return Err(io::Error::other("injected failure"));
            }
            g.synced.lock().unwrap().push(path);
            Ok(())
        });
        (gate, sync)
    }

    #[test]
    fn waiters_are_answered_after_their_syncs_and_share_directory_syncs() {
        let (gate, sync) = gated(None);
        let commit = Arc::new(GroupCommit::with_sync(4, sync).unwrap());
        let mut waiters = Vec::new();
        for i in 0..11 {
            let commit = Arc::clone(&commit);
            let targets = vec![
                Target::FilePath(PathBuf::from(format!("s{i}/1.eml"))),
                Target::Dir(PathBuf::from("incoming")),
            ];
            waiters.push(std::thread::spawn(move || {
                commit.commit_blocking(targets).map(|()| i)
            }));
            if i == 0 {
                // The first sync of `incoming` is running (and held).
                while gate.calls.load(Ordering::SeqCst) < 2 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            waiters.iter().all(|w| !w.is_finished()),
            "a waiter returned while its syncs were held back"
        );
        gate.open.store(true, Ordering::SeqCst);
        for w in waiters {
            let i = w.join().unwrap().unwrap();
            let synced = gate.synced.lock().unwrap();
            assert!(synced.contains(&PathBuf::from(format!("s{i}/1.eml"))));
        }
        let synced = gate.synced.lock().unwrap();
        let dir_syncs = synced
            .iter()
            .filter(|p| *p == Path::new("incoming"))
            .count();
        // The first request's sync, then one shared by the ten that came
        // while it ran (they cannot use it: it started before they asked).
        assert_eq!(dir_syncs, 2, "{synced:?}");
        assert_eq!(synced.len(), 11 + 2);
        assert_eq!(
            commit.stats(),
            Stats {
                dir_syncs: 2,
                dir_waiters: 11
            }
        );
    }

    use std::path::Path;

    #[test]
    fn a_failed_sync_fails_exactly_the_requests_that_needed_it() {
        let (gate, sync) = gated(Some("bad/1.eml"));
        gate.open.store(true, Ordering::SeqCst);
        let commit = GroupCommit::with_sync(2, sync).unwrap();
        let bad = commit.commit_blocking(vec![
            Target::FilePath("bad/1.eml".into()),
            Target::Dir("incoming".into()),
        ]);
        assert!(bad.is_err());
        let good = commit.commit_blocking(vec![
            Target::FilePath("good/1.eml".into()),
            Target::Dir("incoming".into()),
        ]);
        assert!(good.is_ok());
    }

    #[test]
    fn real_files_and_directories_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").unwrap();
        let commit = GroupCommit::start(2).unwrap();
        commit
            .commit_blocking(vec![
                Target::File(File::open(&path).unwrap()),
                Target::FilePath(path.clone()),
                Target::Dir(dir.path().to_path_buf()),
            ])
            .unwrap();
        // A missing file is an error, not a silent success.
        assert!(
            commit
                .commit_blocking(vec![Target::FilePath(dir.path().join("missing"))])
                .is_err()
        );
    }
}
