//! Faults and resource exhaustion, on the real binary: kill -9 at random
//! points a hundred times, a file system that fills up (a real tmpfs),
//! slowloris, a connection flood, and links planted in the spool.
//!
//! Every wait is bounded; a test that cannot make progress fails with what it
//! was waiting for.

mod support;

use latrine::events::EndReason;
use latrine::spool::Manifest;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Dialog, HOSTNAME, Honeypot, SENSOR, check_session, sealed_sessions, sha256_hex};

const QUEUED: &str = "250 2.0.0 Ok: queued as ";

/// Deterministic pseudo-random numbers (xorshift64*), seeded per run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("LATRINE_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn poll(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// `latrine verify SPOOL`: (exit code, stdout).
fn verify(spool: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .arg("verify")
        .arg(spool)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn incoming(spool: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(spool.join(".incoming"))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// kill -9, a hundred times
// ---------------------------------------------------------------------------

/// One client's transactions until the connection dies: every message
/// acknowledged with 250 goes into `acked` as (queue id, sha256).
fn keep_sending(addr: SocketAddr, rng_seed: u64, acked: Arc<Mutex<Vec<(String, String)>>>) {
    let mut rng = Rng(rng_seed | 1);
    for session in 0.. {
        let Ok(s) = TcpStream::connect(addr) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut w = match s.try_clone() {
            Ok(w) => w,
            Err(_) => return,
        };
        let mut r = BufReader::new(s);
        let mut reply = || -> Option<String> {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                if line.as_bytes().get(3) != Some(&b'-') {
                    return Some(line.trim_end().to_string());
                }
            }
        };
        let mut go = || -> Option<()> {
            reply()?;
            w.write_all(b"EHLO crash.example\r\n").ok()?;
            reply()?;
            for n in 0..1 + rng.below(3) {
                // Sizes from a few bytes to 2 MB, so that kills land in DATA too.
                let size = match rng.below(4) {
                    0 => 2 << 20,
                    1 => 64 << 10,
                    _ => 200,
                };
                let mut body =
                    format!("Subject: s{session} m{n} {}\r\n\r\n", rng.next()).into_bytes();
                while body.len() < size {
                    body.extend_from_slice(format!("{:x}\r\n", rng.next()).as_bytes());
                }
                w.write_all(
                    b"MAIL FROM:<a@crash.example>\r\nRCPT TO:<v@victim.example>\r\nDATA\r\n",
                )
                .ok()?;
                reply()?;
                reply()?;
                if !reply()?.starts_with("354") {
                    return None;
                }
                for chunk in body.chunks(64 << 10) {
                    w.write_all(chunk).ok()?;
                }
                w.write_all(b".\r\n").ok()?;
                let answer = reply()?;
                if let Some(qid) = answer.strip_prefix(QUEUED) {
                    acked
                        .lock()
                        .unwrap()
                        .push((qid.to_string(), sha256_hex(&body)));
                }
            }
            if rng.below(2) == 0 {
                w.write_all(b"QUIT\r\n").ok()?;
                reply()?;
            }
            Some(())
        };
        if go().is_none() {
            return;
        }
    }
}

#[test]
fn kill_9_at_random_points_a_hundred_times() {
    const ROUNDS: usize = 100;
    let seed = seed();
    eprintln!("kill -9 rounds: seed {seed} (LATRINE_FAULT_SEED={seed} repeats the run)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut during_start = 0;
    for round in 0..ROUNDS {
        if rng.below(8) == 0 {
            // Killed while starting: recovering the last round's sessions,
            // or binding.
            during_start += 1;
            let mut child = Command::new(env!("CARGO_BIN_EXE_latrine"))
                .args(["listen", "--listen", "127.0.0.1:0", "--sensor", SENSOR])
                .arg("--spool")
                .arg(&spool)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.below(30)));
            child.kill().unwrap();
            child.wait().unwrap();
            continue;
        }
        let mut h = Honeypot::start_on(&spool, &[]);
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let (addr, acked, s) = (h.addr, Arc::clone(&acked), rng.next());
                std::thread::spawn(move || keep_sending(addr, s, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        h.child.kill().unwrap(); // SIGKILL
        h.child.wait().unwrap();
        for c in clients {
            c.join().unwrap();
        }
        let _ = round;
    }
    // The last start recovers whatever the last kill left; SIGTERM then seals.
    let mut h = Honeypot::start_on(&spool, &[]);
    assert_eq!(h.terminate(), Some(0));
    assert!(incoming(&spool).is_empty(), "{:?}", incoming(&spool));

    let sessions = sealed_sessions(&spool);
    for (d, m) in &sessions {
        // Recovered sessions are checked by `latrine verify` below: one
        // killed between its mkdir and its transcript has no transcript, and
        // a recovered message's time can fall outside the session's (both
        // noted in issue 6's closing note).
        if m.end_reason != EndReason::Recovered {
            check_session(d, m);
        }
    }
    let stored: BTreeMap<&str, (&str, bool)> = sessions
        .iter()
        .flat_map(|(_, m)| &m.messages)
        .filter_map(|msg| {
            msg.queue_id
                .as_deref()
                .map(|q| (q, (msg.sha256.as_str(), msg.accepted)))
        })
        .collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&(String, String)> = acked
        .iter()
        .filter(|(qid, sha)| stored.get(qid.as_str()) != Some(&(sha.as_str(), true)))
        .collect();
    let recovered = sessions
        .iter()
        .filter(|(_, m)| m.end_reason == EndReason::Recovered)
        .count();
    let (code, out) = verify(&spool);
    eprintln!(
        "kill -9: {ROUNDS} rounds ({during_start} during start-up), {} sessions sealed \
         ({recovered} recovered), {} messages acknowledged with 250, {} lost; verify: {}",
        sessions.len(),
        acked.len(),
        lost.len(),
        out.lines().last().unwrap_or("")
    );
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(acked.len() >= 50, "too few messages to mean anything");
    assert!(recovered >= 10, "too few kills landed in a session");
    assert_eq!(code, Some(0), "latrine verify:\n{out}");
}

// ---------------------------------------------------------------------------
// Disk full, on a real (small) file system
// ---------------------------------------------------------------------------

/// A tmpfs of `mib` MiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts one, or says why not. Under CI=true (root) failing is a failure.
    fn mount(mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { dir }),
            other => {
                let why = match other {
                    Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                    Err(e) => e.to_string(),
                };
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("mount -t tmpfs failed under CI=true (it runs as root): {why}");
                }
                eprintln!("skipping: cannot mount a tmpfs (needs root): {why}");
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    latrine::listen::storage::free_bytes(path).unwrap()
}

/// Fills the file system of `path` with `file` until `leave` bytes are free.
fn fill(file: &Path, leave: u64) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .unwrap();
    let block = vec![0x5a; 1 << 20];
    let dir = file.parent().unwrap();
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            return;
        }
        let n = (free - leave).min(block.len() as u64) as usize;
        if f.write_all(&block[..n]).is_err() {
            return;
        }
        f.sync_all().unwrap();
    }
}

/// EHLO, MAIL: the reply to MAIL.
fn try_mail(h: &Honeypot) -> (u16, String) {
    let mut d = Dialog::open(h);
    let port = d.stream.local_addr().unwrap().port();
    assert!(d.cmd("EHLO full.example").starts_with("250-"));
    let reply = d.cmd("MAIL FROM:<a@full.example>");
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    (port, reply)
}

fn session_of(h: &Honeypot, port: u16) -> (PathBuf, Manifest) {
    let mut found = None;
    assert!(
        poll(Duration::from_secs(30), || {
            found = h
                .manifests()
                .into_iter()
                .find(|(_, m)| m.client.port == port);
            found.is_some()
        }),
        "session from port {port} not sealed; log:\n{}",
        h.log.lock().unwrap()
    );
    found.unwrap()
}

#[test]
fn a_full_disk_refuses_mail_keeps_recording_and_recovers() {
    let Some(fs) = Tmpfs::mount(48) else { return };
    let spool = fs.path().join("spool");
    let ballast = fs.path().join("ballast");
    let h = Honeypot::start_on(
        &spool,
        &[
            "--min-free-mb",
            "16",
            "--resume-free-mb",
            "24",
            "--max-message-size",
            "40000000",
        ],
    );
    let (_, reply) = try_mail(&h);
    assert_eq!(reply, "250 2.1.0 Ok", "plenty of space at first");

    // Past the mark (8 MiB left of 48): MAIL gets 452, the session is kept.
    fill(&ballast, 8 << 20);
    let mut last = (0, String::new());
    assert!(
        poll(Duration::from_secs(10), || {
            last = try_mail(&h);
            last.1 == "452 4.3.1 Insufficient system storage"
        }),
        "MAIL still answered {:?} with {} bytes free",
        last.1,
        free_bytes(fs.path())
    );
    let (dir, m) = session_of(&h, last.0);
    check_session(&dir, &m);
    assert_eq!(m.end_reason, EndReason::Quit);
    assert_eq!(m.helo, vec!["full.example"]);
    assert_eq!(
        m.protocol_errors[0].reply,
        "452 4.3.1 Insufficient system storage"
    );

    // Space back above the low mark but below the high one: still refused.
    std::fs::remove_file(&ballast).unwrap();
    fill(&ballast, 20 << 20);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(try_mail(&h).1, "452 4.3.1 Insufficient system storage");

    // Back above the high mark: mail is taken again, by itself.
    std::fs::remove_file(&ballast).unwrap();
    assert!(
        poll(Duration::from_secs(10), || try_mail(&h).1 == "250 2.1.0 Ok"),
        "mail not taken again after space came back"
    );

    // Above the marks, but a message bigger than the space left: the write
    // fails, and the client is never told 250 for it.
    fill(&ballast, 30 << 20);
    let mut d = Dialog::open(&h);
    let port = d.stream.local_addr().unwrap().port();
    assert!(d.cmd("EHLO big.example").starts_with("250-"));
    assert_eq!(d.cmd("MAIL FROM:<a@big.example>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<v@victim.example>"), "250 2.1.5 Ok");
    assert!(d.cmd("DATA").starts_with("354"));
    let line = [&[b'y'; 998][..], b"\r\n"].concat();
    for _ in 0..(36 << 20) / line.len() {
        d.send(&line);
    }
    d.send(b".\r\n");
    let reply = d.reply();
    assert_eq!(reply, "451 4.3.0 Error: queue file write error");
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    std::fs::remove_file(&ballast).unwrap();
    let (dir, m) = session_of(&h, port);
    check_session(&dir, &m);
    let msg = &m.messages[0];
    assert!(
        !msg.accepted && msg.truncated && msg.queue_id.is_none(),
        "{msg:?}"
    );
    assert_eq!(
        msg.truncated_reason,
        Some(latrine::events::Truncation::WriteError)
    );

    // And ordinary mail goes through again.
    let mut d = Dialog::open(&h);
    assert!(d.cmd("EHLO ok.example").starts_with("250-"));
    assert_eq!(d.cmd("MAIL FROM:<a@ok.example>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<v@victim.example>"), "250 2.1.5 Ok");
    assert!(d.cmd("DATA").starts_with("354"));
    d.send(b"Subject: ok\r\n\r\nfine\r\n.\r\n");
    assert!(d.reply().starts_with(QUEUED));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    assert_eq!(verify(&spool).0, Some(0));
}

// ---------------------------------------------------------------------------
// Slowloris and floods
// ---------------------------------------------------------------------------

/// Raises this process's open-file limit (inherited by the listener).
fn raise_nofile(want: u64) {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: one rlimit struct in, one out.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max.max(l.rlim_cur);
        let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
    }
    assert!(
        l.rlim_cur >= want,
        "open file limit {} < {want}: raise the hard limit (ulimit -Hn)",
        l.rlim_cur
    );
}

/// A TCP connection to `to` from the loopback address `from` (any port).
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it is handed to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: a.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*a.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // The port is chosen at connect (faster with thousands of sockets).
        let one: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let local = sockaddr(SocketAddrV4::new(from, 0));
        if libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let SocketAddr::V4(to) = to else {
            panic!("IPv4 only")
        };
        let remote = sockaddr(to);
        if libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stream)
    }
}

/// A whole transaction from 127.0.0.1; returns how long it took.
fn normal_client(h: &Honeypot) -> Duration {
    let start = Instant::now();
    let mut d = Dialog::open(h);
    assert!(d.cmd("EHLO normal.example").starts_with("250-"));
    assert_eq!(d.cmd("MAIL FROM:<n@normal.example>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<v@victim.example>"), "250 2.1.5 Ok");
    assert!(d.cmd("DATA").starts_with("354"));
    d.send(b"Subject: normal\r\n\r\nhello\r\n.\r\n");
    assert!(d.reply().starts_with(QUEUED));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    start.elapsed()
}

#[test]
fn two_thousand_slowloris_clients_do_not_starve_a_normal_one() {
    const CLIENTS: usize = 2000;
    const PER_IP: usize = 50;
    raise_nofile(2 * CLIENTS as u64 + 500);
    // Short limits: 5 s idle, 12 s in all. Every client sends a byte when
    // connected; then half send one every 2 s (they hit the total time), half
    // every 6 s (the idle limit).
    let h = Honeypot::start(&[
        "--idle-timeout",
        "5",
        "--session-timeout",
        "12",
        "--max-connections",
        "3000",
        "--no-fsync",
    ]);
    // One thread connects the clients (100 every 100 ms) and keeps each on
    // its own schedule, measured from its own connect time.
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr = h.addr;
    let counter = Arc::clone(&connected);
    let byte_sender = std::thread::spawn(move || {
        struct Slow {
            s: TcpStream,
            period: Duration,
            next: Instant,
            closed: bool,
        }
        let start = Instant::now();
        let mut slow: Vec<Slow> = Vec::new();
        while start.elapsed() < Duration::from_secs(60) {
            for _ in 0..100.min(CLIENTS - slow.len()) {
                let i = slow.len();
                let ip = Ipv4Addr::new(127, 0, 1, (10 + i / PER_IP) as u8);
                let mut s = connect_from(ip, addr).expect("connect");
                s.write_all(b"E").unwrap();
                s.set_nonblocking(true).unwrap();
                let period = Duration::from_secs(if i.is_multiple_of(2) { 2 } else { 6 });
                slow.push(Slow {
                    s,
                    period,
                    next: Instant::now() + period,
                    closed: false,
                });
            }
            counter.store(slow.len(), std::sync::atomic::Ordering::Relaxed);
            for c in slow.iter_mut().filter(|c| !c.closed) {
                let mut buf = [0u8; 1024];
                loop {
                    match c.s.read(&mut buf) {
                        Ok(0) => {
                            c.closed = true;
                            break;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            c.closed = true;
                            break;
                        }
                    }
                }
                if !c.closed && Instant::now() >= c.next {
                    c.next += c.period;
                    if c.s.write_all(b"E").is_err() {
                        c.closed = true;
                    }
                }
            }
            if slow.len() == CLIENTS && slow.iter().all(|c| c.closed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (slow.iter().filter(|c| c.closed).count(), start.elapsed())
    });
    assert!(
        poll(Duration::from_secs(60), || connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == CLIENTS),
        "could not connect {CLIENTS} clients"
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut took = Vec::new();
    for _ in 0..3 {
        took.push(normal_client(&h));
        std::thread::sleep(Duration::from_millis(700));
    }
    let (closed, after) = byte_sender.join().unwrap();
    eprintln!(
        "slowloris: normal transactions took {took:?} with {CLIENTS} slow clients connected; \
         the server closed {closed} of them within {after:?}"
    );
    for t in &took {
        assert!(*t < Duration::from_secs(3), "normal client took {t:?}");
    }
    assert_eq!(closed, CLIENTS, "every slow client is closed by a limit");

    let sessions = h.wait_sealed(CLIENTS + 3);
    let mut by_limit: BTreeMap<String, usize> = BTreeMap::new();
    for (d, m) in &sessions {
        if m.client.ip == "127.0.0.1" {
            assert_eq!(m.end_reason, EndReason::Quit);
            continue;
        }
        check_session(d, m);
        *by_limit.entry(m.limits_hit.join(",")).or_default() += 1;
    }
    eprintln!("slowloris sessions by limit: {by_limit:?}");
    assert_eq!(by_limit.get("session_time"), Some(&(CLIENTS / 2)));
    assert_eq!(by_limit.get("idle_timeout"), Some(&(CLIENTS / 2)));
}

#[test]
fn a_connection_flood_hits_the_per_ip_and_global_caps() {
    raise_nofile(2000);
    let h = Honeypot::start(&[
        "--max-connections-per-ip",
        "20",
        "--max-connections",
        "100",
        "--no-fsync",
    ]);
    let greeting = |s: &mut TcpStream| -> String {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            match s.read(&mut b) {
                Ok(1) => line.push(b[0]),
                _ => break,
            }
        }
        String::from_utf8_lossy(&line).trim_end().to_string()
    };
    // 60 ordinary clients from 6 addresses.
    let mut held = Vec::new();
    for i in 0..60 {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 2, 10 + i / 10), h.addr).unwrap();
        assert!(greeting(&mut s).starts_with("220 "));
        held.push(s);
    }
    // 500 connections from one address, as fast as it can.
    let flood_ip = Ipv4Addr::new(127, 0, 2, 99);
    let mut flood: Vec<TcpStream> = (0..500)
        .map(|_| connect_from(flood_ip, h.addr).unwrap())
        .collect();
    let mut flood_ok = 0;
    let mut per_ip_refused = 0;
    let mut closed_silently = 0;
    for s in &mut flood {
        let g = greeting(s);
        if g.starts_with("220 ") {
            flood_ok += 1;
        } else if g == format!("421 4.7.0 {HOSTNAME} Error: too many connections from {flood_ip}") {
            per_ip_refused += 1;
        } else {
            assert_eq!(g, "", "refused without a reply past the refusal budget");
            closed_silently += 1;
        }
    }
    assert_eq!(flood_ok, 20, "the per-IP cap");
    assert_eq!(per_ip_refused + closed_silently, 480);
    assert!(
        per_ip_refused >= 64,
        "at least the refusal budget is answered"
    );
    // 20 more ordinary ones fill the global cap of 100.
    for i in 0..20 {
        let mut s = connect_from(Ipv4Addr::new(127, 0, 2, 50 + i / 10), h.addr).unwrap();
        assert!(greeting(&mut s).starts_with("220 "));
        held.push(s);
    }
    // 100 open now: the global cap refuses everyone else, 127.0.0.1 too.
    let mut extra = connect_from(Ipv4Addr::new(127, 0, 2, 200), h.addr).unwrap();
    assert!(greeting(&mut extra).starts_with("421 4.7.0 "));
    let mut local = h.connect();
    assert!(greeting(&mut local).starts_with("421 4.7.0 "));
    // The flood goes away: service is back.
    drop(flood);
    let mut served = None;
    assert!(poll(Duration::from_secs(10), || {
        let mut s = h.connect();
        let g = greeting(&mut s);
        if g.starts_with("220 ") {
            served = Some(s);
            true
        } else {
            false
        }
    }));
    drop(served);
    assert!(normal_client(&h) < Duration::from_secs(5));
    drop(held);

    // 20 flood and 80 + 2 other sessions ran to their end.
    let mut sessions = Vec::new();
    assert!(
        poll(Duration::from_secs(60), || {
            sessions = h.manifests();
            sessions
                .iter()
                .filter(|(_, m)| m.limits_hit.is_empty())
                .count()
                >= 102
        }),
        "not all accepted sessions were sealed"
    );
    let mut count: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (d, m) in &sessions {
        check_session(d, m);
        let ip = if m.client.ip == flood_ip.to_string() {
            "flood"
        } else {
            "others"
        };
        *count
            .entry((ip.into(), m.limits_hit.join(",")))
            .or_default() += 1;
    }
    eprintln!(
        "flood: {per_ip_refused} refused with 421, {closed_silently} closed past the refusal \
         budget; sessions by (source, limit): {count:?}"
    );
    // Every accepted session is recorded; refusals that got a 421 too.
    assert_eq!(count.get(&("flood".into(), String::new())), Some(&20));
    assert_eq!(count.get(&("others".into(), String::new())), Some(&82));
    let refused_recorded = count
        .get(&("flood".into(), "connections_per_ip".into()))
        .copied()
        .unwrap_or(0);
    assert_eq!(refused_recorded, per_ip_refused, "every 421 is recorded");
    assert!(count.contains_key(&("others".into(), "connections".into())));
}

// ---------------------------------------------------------------------------
// Links and permissions
// ---------------------------------------------------------------------------

/// Every entry under `dir` with its mode.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = e.path().symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path(), meta.permissions().mode() & 0o7777, meta.is_dir()));
        }
    }
    out
}

/// A session greeted with `helo`: it cannot be sealed through the link
/// (the error is logged) and nothing reaches `outside`.
fn session_refused_by_link(h: &Honeypot, helo: &str, outside: &Path) {
    let mut d = Dialog::open(h);
    assert!(d.cmd(&format!("EHLO {helo}")).starts_with("250-"));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    assert!(
        poll(Duration::from_secs(10), || h
            .log
            .lock()
            .unwrap()
            .contains("is a symbolic link: not followed")),
        "no error logged; log:\n{}",
        h.log.lock().unwrap()
    );
    assert!(
        std::fs::read_dir(outside).unwrap().next().is_none(),
        "evidence written through the link"
    );
}

#[test]
fn a_link_planted_after_sessions_were_sealed_is_refused_too() {
    // The day's directory is walked once and then kept open; a link put in
    // its place later must not be written through either.
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let mut h = Honeypot::start_on(&spool, &[]);
    let mut d = Dialog::open(&h);
    assert!(d.cmd("EHLO first.example").starts_with("250-"));
    assert_eq!(d.cmd("QUIT"), "221 2.0.0 Bye");
    assert!(poll(Duration::from_secs(10), || sealed_sessions(&spool)
        .len()
        == 1));
    let day = sealed_sessions(&spool)[0].0.parent().unwrap().to_path_buf();

    // The real directory moves away (it stays inside the spool) and a link
    // to somewhere else takes its name.
    let moved = day.with_file_name("moved");
    std::fs::rename(&day, &moved).unwrap();
    std::os::unix::fs::symlink(&outside, &day).unwrap();
    session_refused_by_link(&h, "second.example", &outside);
    assert_eq!(std::fs::read_dir(&moved).unwrap().count(), 1);
    assert_eq!(
        incoming(&spool).len(),
        1,
        "the second session stays in .incoming"
    );
    assert_eq!(h.terminate(), Some(0));
}

#[test]
fn planted_links_never_redirect_evidence() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("spool");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();

    // A link where today's sessions go (`<sensor>/<YYYY>/<MM>/<DD>`).
    let today = time::OffsetDateTime::now_utc();
    let day = spool.join(format!(
        "{SENSOR}/{:04}/{:02}/{:02}",
        today.year(),
        today.month() as u8,
        today.day()
    ));
    std::fs::create_dir_all(day.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&outside, &day).unwrap();
    let mut h = Honeypot::start_on(&spool, &[]);
    session_refused_by_link(&h, "link.example", &outside);
    let kept = incoming(&spool);
    assert_eq!(kept.len(), 1, "the session stays in .incoming");
    assert!(kept[0].join("transcript.log").is_file());
    assert_eq!(h.terminate(), Some(0));
    // Once the link is gone, the next start seals it where it belongs.
    std::fs::remove_file(&day).unwrap();
    let mut h = Honeypot::start_on(&spool, &[]);
    assert_eq!(h.terminate(), Some(0));
    let sessions = sealed_sessions(&spool);
    assert_eq!(sessions.len(), 1);
    assert!(sessions[0].0.starts_with(&day));
    check_session(&sessions[0].0, &sessions[0].1);
    assert!(sessions[0].1.helo == vec!["link.example"]);

    // No world or group access anywhere the listener wrote.
    for (path, mode, is_dir) in modes(&spool) {
        if path.starts_with(spool.join(SENSOR)) && !path.starts_with(&day) {
            continue; // made by this test
        }
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{}: mode {mode:o}", path.display());
    }

    // A linked `.incoming` stops the start, naming it.
    let spool2 = tmp.path().join("spool2");
    std::fs::create_dir_all(&spool2).unwrap();
    std::os::unix::fs::symlink(&outside, spool2.join(".incoming")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_latrine"))
        .args(["listen", "--listen", "127.0.0.1:0", "--spool"])
        .arg(&spool2)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(".incoming is a symbolic link"), "{err}");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());

    // The writer's own files: never through a link, never over a file.
    let victim = outside.join("victim");
    std::fs::write(&victim, b"original").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    assert!(latrine::spool::writer::create_new(&link).is_err());
    assert!(latrine::spool::writer::create_new(&victim).is_err());
    assert_eq!(std::fs::read(&victim).unwrap(), b"original");
}
