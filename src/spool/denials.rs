//! Denial counts: how many connections the deny lists closed, per minute,
//! client address and rule, in one append-only file per sensor and UTC day
//! (`<sensor>/denials/<YYYY-MM-DD>.log`; the format is in the module
//! documentation of [`crate::spool`]).
//!
//! A denied connection gets no session directory: a flood of them must cost
//! the sensor almost nothing. The listener counts them in memory
//! ([`DenialCounter::count`]); a writer task appends what was counted at
//! once when it was idle, then at most once a second, so that a lone denial
//! reaches the disk at once and a flood of them from one address becomes at
//! most one line a second.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;

/// The directory under the sensor's that holds the day files.
pub const DENIALS: &str = "denials";
/// The first line's start, before `sensor=` and `date=`.
pub const HEADER: &str = "# latrine denials v1";
/// The rule of a connection allowed because the country database did not
/// know its address: counted here too, so that a gap in the database shows.
pub const ALLOWED_UNKNOWN_COUNTRY: &str = "allowed:country-unknown";
/// Distinct (minute, address, rule) keys held before a write is forced:
/// bounds the memory a flood from many addresses can take.
const MAX_PENDING_KEYS: usize = 65_536;
/// Longest wait between two appends while connections keep being denied.
const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// One line: in `minute`, `count` more connections from `ip` under `rule`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenialLine {
    /// `YYYY-MM-DDTHH:MMZ`.
    pub minute: String,
    pub ip: IpAddr,
    pub rule: String,
    pub count: u64,
}

impl DenialLine {
    /// Whether the connections were closed (rather than allowed and counted).
    pub fn denied(&self) -> bool {
        !self.rule.starts_with("allowed:")
    }
}

/// `2026-12-07T06:44Z` for a time.
pub fn minute_of(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The header of a day file.
pub fn header(sensor: &str, date: &str) -> String {
    format!("{HEADER} sensor={sensor} date={date}\n")
}

/// Whether `name` is a day file's name, `YYYY-MM-DD.log`.
pub fn is_day_file(name: &[u8]) -> bool {
    name.len() == 14
        && name.ends_with(b".log")
        && name[..10].iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Parses a record line (without its newline).
pub fn parse_line(line: &str) -> Result<DenialLine, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    let [minute, ip, rule, count] = fields[..] else {
        return Err(format!("{} fields, not 4", fields.len()));
    };
    if !is_minute(minute) {
        return Err(format!("{minute:?} is not a minute (YYYY-MM-DDTHH:MMZ)"));
    }
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    if rule.is_empty() || !rule.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{rule:?} is not a rule"));
    }
    let count: u64 = count
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{count:?} is not a positive count"))?;
    Ok(DenialLine {
        minute: minute.into(),
        ip,
        rule: rule.into(),
        count,
    })
}

fn is_minute(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 17
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 => *c == b':',
            16 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
        && time::Date::parse(
            &s[..10],
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .is_ok()
        && s[11..13] < *"24"
        && s[14..16] < *"60"
}

/// A day file read back: its lines and what is wrong with it.
#[derive(Debug, Default)]
pub struct DayFile {
    pub lines: Vec<DenialLine>,
    /// `(line number, reason)` for each line that cannot be taken.
    pub problems: Vec<(usize, String)>,
    /// The file does not end with a newline: the sensor stopped while
    /// appending its last line (which is not taken).
    pub incomplete_tail: bool,
}

/// Reads a day file named `<date>.log` of `sensor` (the directory above `denials/`).
pub fn read_day_file(bytes: &[u8], sensor: &str, date: &str) -> DayFile {
    let mut day = DayFile::default();
    let text = String::from_utf8_lossy(bytes);
    let mut body = text.as_ref();
    if !text.ends_with('\n') && !text.is_empty() {
        day.incomplete_tail = true;
        body = text.rfind('\n').map_or("", |i| &text[..=i]);
    }
    let expected = header(sensor, date);
    for (i, line) in body.lines().enumerate() {
        let number = i + 1;
        if number == 1 {
            if format!("{line}\n") != expected {
                day.problems.push((
                    1,
                    format!("header is {:?}, expected {:?}", line, expected.trim_end()),
                ));
            }
            continue;
        }
        match parse_line(line) {
            Ok(l) if !l.minute.starts_with(date) => day
                .problems
                .push((number, format!("minute {} is not on {date}", l.minute))),
            Ok(l) => day.lines.push(l),
            Err(e) => day.problems.push((number, e)),
        }
    }
    if body.is_empty() && !day.incomplete_tail {
        day.problems.push((1, "empty file, no header".into()));
    }
    day
}

/// Largest day file read back.
const MAX_DAY_FILE: u64 = 512 * 1024 * 1024;

/// Reads the day file at `path` without following a link.
pub fn read_day_path(path: &Path, sensor: &str, date: &str) -> io::Result<DayFile> {
    use std::io::Read;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_DAY_FILE {
        return Err(io::Error::other(format!(
            "{} bytes, more than the {MAX_DAY_FILE} read",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_DAY_FILE).read_to_end(&mut bytes)?;
    Ok(read_day_file(&bytes, sensor, date))
}

/// Counts per (minute, address, rule) not yet written.
type Pending = BTreeMap<(String, IpAddr, Arc<str>), u64>;

/// The listener's side: counts a denial in memory and wakes the writer.
#[derive(Clone)]
pub struct DenialCounter {
    pending: Arc<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
    urgent: Arc<tokio::sync::Notify>,
}

impl DenialCounter {
    pub fn count(&self, at: OffsetDateTime, ip: IpAddr, rule: &Arc<str>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending
            .entry((minute_of(at), ip, Arc::clone(rule)))
            .or_insert(0) += 1;
        let full = pending.len() >= MAX_PENDING_KEYS;
        drop(pending);
        if full {
            // Past the key budget the writer is woken even within its interval.
            self.urgent.notify_one();
        }
        self.wake.notify_one();
    }
}

/// The writer's side: appends counted denials to the day files.
pub struct DenialLog {
    dir: PathBuf,
    sensor: String,
    /// The day file open for appending, and its date.
    open: Option<(String, File)>,
    pending: Arc<Mutex<Pending>>,
    wake: Arc<tokio::sync::Notify>,
    urgent: Arc<tokio::sync::Notify>,
}

impl DenialLog {
    /// The log of `sensor` under the spool `root`. Nothing is created
    /// until a denial is counted.
    pub fn new(root: &Path, sensor: &str) -> DenialLog {
        DenialLog {
            dir: root.join(sensor).join(DENIALS),
            sensor: sensor.into(),
            open: None,
            pending: Arc::default(),
            wake: Arc::default(),
            urgent: Arc::default(),
        }
    }

    pub fn counter(&self) -> DenialCounter {
        DenialCounter {
            pending: Arc::clone(&self.pending),
            wake: Arc::clone(&self.wake),
            urgent: Arc::clone(&self.urgent),
        }
    }

    /// Appends everything counted so far; returns the number of lines.
    pub fn write_pending(&mut self) -> io::Result<usize> {
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        let mut written = 0;
        // In key order: by minute, so each day's lines go to its file in turn.
        let mut batch = String::new();
        let mut batch_date = String::new();
        for ((minute, ip, rule), count) in pending {
            let date = &minute[..10];
            if date != batch_date && !batch.is_empty() {
                self.append(&batch_date, batch.as_bytes())?;
                batch.clear();
            }
            batch_date = date.to_string();
            batch.push_str(&format!("{minute} {ip} {rule} {count}\n"));
            written += 1;
        }
        if !batch.is_empty() {
            self.append(&batch_date, batch.as_bytes())?;
        }
        Ok(written)
    }

    /// One `write(2)` of whole lines, so that a reader never sees half of
    /// one unless the sensor died inside the call.
    fn append(&mut self, date: &str, lines: &[u8]) -> io::Result<()> {
        if self.open.as_ref().is_none_or(|(d, _)| d != date) {
            if let Some((_, old)) = self.open.take() {
                // A finished day is made durable before it ships.
                let _ = old.sync_data();
            }
            super::writer::create_dirs(&self.dir)?;
            let path = self.dir.join(format!("{date}.log"));
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if file.metadata()?.len() == 0 {
                file.write_all(header(&self.sensor, date).as_bytes())?;
            }
            self.open = Some((date.to_string(), file));
        }
        let (_, file) = self.open.as_mut().expect("opened above");
        file.write_all(lines)
    }

    /// Writes until `stop` resolves, then writes what is left and syncs.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = self.wake.notified() => {}
            }
            self.write_logged();
            // Coalesce: what arrives in the next interval is one line per key.
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(WRITE_INTERVAL) => {}
                _ = self.urgent.notified() => {}
            }
        }
        self.write_logged();
        if let Some((_, file)) = &self.open {
            let _ = file.sync_data();
        }
    }

    fn write_logged(&mut self) {
        if let Err(e) = self.write_pending() {
            tracing::error!("cannot append denial counts: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_ones_say_why() {
        let l = parse_line("2026-12-07T06:44Z 127.0.0.2 cidr:127.0.0.2/32 3").unwrap();
        assert_eq!(l.count, 3);
        assert!(l.denied());
        assert!(
            parse_line("2026-12-07T06:44Z ::1 allowed:country-unknown 1")
                .is_ok_and(|l| !l.denied())
        );
        assert!(parse_line("2026-12-07T24:44Z 127.0.0.2 r 3").is_err());
        assert!(parse_line("2026-13-07T06:44Z 127.0.0.2 r 3").is_err());
        assert!(parse_line("2026-12-07T06:44Z 127.0.0.x r 3").is_err());
        assert!(parse_line("2026-12-07T06:44Z 127.0.0.2 r 0").is_err());
        assert!(parse_line("2026-12-07T06:44Z 127.0.0.2 r").is_err());
        assert!(is_day_file(b"2026-12-07.log"));
        assert!(!is_day_file(b"2026-12-07.lo"));
        assert!(!is_day_file(b"../12-07.log"));
    }

    #[test]
    fn writes_coalesced_lines_per_day_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = DenialLog::new(dir.path(), "s1");
        let counter = log.counter();
        let rule: Arc<str> = "country:NL".into();
        let t = time::macros::datetime!(2026-12-07 23:59:10 UTC);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            counter.count(t, ip, &rule);
        }
        counter.count(t + Duration::from_secs(60), ip, &rule);
        assert_eq!(log.write_pending().unwrap(), 2);
        assert_eq!(log.write_pending().unwrap(), 0);
        let day1 = std::fs::read(dir.path().join("s1/denials/2026-12-07.log")).unwrap();
        let read = read_day_file(&day1, "s1", "2026-12-07");
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert_eq!(read.lines.len(), 1);
        assert_eq!(read.lines[0].count, 5);
        let day2 = std::fs::read(dir.path().join("s1/denials/2026-12-08.log")).unwrap();
        let read = read_day_file(&day2, "s1", "2026-12-08");
        assert_eq!(read.lines[0].minute, "2026-12-08T00:00Z");
        // A torn last line is noticed, not taken.
        let mut torn = day2.clone();
        torn.extend_from_slice(b"2026-12-08T00:01Z 192.0.2.1 coun");
        let read = read_day_file(&torn, "s1", "2026-12-08");
        assert!(read.incomplete_tail && read.lines.len() == 1);
        // A line of another day or another sensor's header is a problem.
        let read = read_day_file(&day2, "s2", "2026-12-08");
        assert_eq!(read.problems.len(), 1);
        let read = read_day_file(&day1, "s1", "2026-12-08");
        assert_eq!(read.problems.len(), 2);
    }
}
