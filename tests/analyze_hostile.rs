//! `latrine analyze` on damaged and hostile spools: every problem is
//! reported in `errors.csv` with its reason, the run goes on, links are not
//! followed, and pathological messages neither crash nor hang it.

mod analyze_common;

use analyze_common::*;
use std::path::Path;
use std::time::Duration;

fn message(url: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: s\r\n\r\nsee {url}\r\n").into_bytes()
}

fn one(w: &Writer, ip: &str, body: &[u8]) -> std::path::PathBuf {
    w.session(
        ip,
        1000,
        &[Msg {
            from: "a@example.org",
            rcpt: &["v@example.net"],
            body,
        }],
    )
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The errors as (stage, file, reason), sorted.
fn errors(out: &Path) -> Vec<(String, String, String)> {
    let mut rows: Vec<(String, String, String)> = csv_rows(&out.join("errors.csv"))
        .into_iter()
        .map(|r| (r["stage"].clone(), r["file"].clone(), r["reason"].clone()))
        .collect();
    rows.sort();
    rows
}

#[test]
fn damaged_sessions_are_reported_and_links_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let w = Writer::open(&spool, "h");

    let good = one(&w, "192.0.2.1", &message("http://good.example/"));
    let broken = one(&w, "192.0.2.2", &message("http://broken.example/"));
    std::fs::write(
        broken.join("manifest.json"),
        b"{\"schema\": \"latrine.session/1\", \"session_id\": ",
    )
    .unwrap();
    let future = one(&w, "192.0.2.3", &message("http://future.example/"));
    edit_manifest(&future, |m| m["schema"] = "latrine.session/2".into());
    let missing = one(&w, "192.0.2.4", &message("http://missing.example/"));
    std::fs::remove_file(missing.join("messages/1.eml")).unwrap();
    let linked = one(&w, "192.0.2.5", &message("http://linked.example/"));
    let secret = outside.join("secret.eml");
    std::fs::write(&secret, message("http://outside.example/secret")).unwrap();
    std::fs::remove_file(linked.join("messages/1.eml")).unwrap();
    std::os::unix::fs::symlink(&secret, linked.join("messages/1.eml")).unwrap();
    let fifo = one(&w, "192.0.2.6", &message("http://fifo.example/"));
    std::fs::remove_file(fifo.join("messages/1.eml")).unwrap();
    mkfifo(&fifo.join("messages/1.eml"));
    let linked_dir = one(&w, "192.0.2.7", &message("http://linked-dir.example/"));
    std::fs::create_dir_all(outside.join("messages")).unwrap();
    std::fs::copy(&secret, outside.join("messages/1.eml")).unwrap();
    std::fs::remove_dir_all(linked_dir.join("messages")).unwrap();
    std::os::unix::fs::symlink(outside.join("messages"), linked_dir.join("messages")).unwrap();
    let altered = one(&w, "192.0.2.8", &message("http://altered.example/"));
    let mut bytes = std::fs::read(altered.join("messages/1.eml")).unwrap();
    bytes[0] = b'f';
    std::fs::write(altered.join("messages/1.eml"), &bytes).unwrap();
    let altered_sha = sha256_hex(&bytes);

    // A whole session outside the spool, linked into it.
    let elsewhere = Writer::open(&dir.path().join("elsewhere"), "h");
    let foreign = one(
        &elsewhere,
        "192.0.2.9",
        &message("http://outside-session.example/"),
    );
    let day = good.parent().unwrap();
    let link = day.join(foreign.file_name().unwrap());
    std::os::unix::fs::symlink(&foreign, &link).unwrap();
    // A session still being written is not read.
    let incoming = spool.join(".incoming").join(
        good.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .replace("Z-", "Z-f"),
    );
    copy_tree(&good, &incoming);

    let out = dir.path().join("out");
    analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-geoip",
        "-q",
    ]);

    let rel = |p: &Path| p.strip_prefix(&spool).unwrap().display().to_string();
    let got = errors(&out);
    let size = bytes.len();
    let listed = sha256_hex(&message("http://altered.example/"));
    let want = vec![
        (
            "manifest".to_string(),
            "manifest.json".to_string(),
            "not valid JSON: EOF while parsing a value at line 1 column 46".to_string(),
        ),
        (
            "manifest".into(),
            "manifest.json".into(),
            "unsupported schema \"latrine.session/2\", expected \"latrine.session/1\"".into(),
        ),
        (
            "message".into(),
            "messages/1.eml".into(),
            "cannot read: No such file or directory (os error 2)".into(),
        ),
        (
            "message".into(),
            "messages/1.eml".into(),
            format!(
                "cannot read: symbolic link to {:?}, not followed",
                outside.join("messages").display().to_string()
            ),
        ),
        (
            "message".into(),
            "messages/1.eml".into(),
            format!(
                "cannot read: symbolic link to {:?}, not followed",
                secret.display().to_string()
            ),
        ),
        (
            "message".into(),
            "messages/1.eml".into(),
            format!(
                "differs from the manifest (size {size}, sha256 {altered_sha}; the manifest says {size}, \
             {listed}): counted as read; run latrine verify"
            ),
        ),
        (
            "message".into(),
            "messages/1.eml".into(),
            "cannot read: not a regular file".into(),
        ),
        (
            "walk".into(),
            String::new(),
            format!("symbolic link to {}, not followed", foreign.display()),
        ),
    ];
    let mut want = want;
    want.sort();
    assert_eq!(got, want);
    // Which session each error is about.
    let paths: Vec<(String, String)> = csv_rows(&out.join("errors.csv"))
        .into_iter()
        .map(|r| (r["path"].clone(), r["session_id"].clone()))
        .collect();
    for (dir, id) in [(&broken, ""), (&future, ""), (&link, "")] {
        assert!(paths.contains(&(rel(dir), id.to_string())), "{paths:?}");
    }
    for dir in [&missing, &linked, &fifo, &linked_dir, &altered] {
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(paths.contains(&(rel(dir), id)), "{paths:?}");
    }

    let sessions = csv_rows(&out.join("sessions.csv"));
    assert_eq!(
        sessions.len(),
        6,
        "good, missing, linked, fifo, linked_dir, altered"
    );
    assert_eq!(row(&sessions, "client_ip", "192.0.2.5")["problems"], "1");
    let urls: Vec<String> = csv_rows(&out.join("urls.csv"))
        .into_iter()
        .map(|u| u["url"].clone())
        .collect();
    assert_eq!(urls, ["http://altered.example/", "http://good.example/"]);
    // Messages that could not be read still count, by the manifest's hash.
    let messages = csv_rows(&out.join("messages.csv"));
    assert_eq!(messages.len(), 6);
    row(
        &messages,
        "sha256",
        &sha256_hex(&message("http://missing.example/")),
    );
    row(&messages, "sha256", &altered_sha);
}

#[test]
fn pathological_messages_neither_crash_nor_hang_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let w = Writer::open(&spool, "p");
    let placeholder = message("http://placeholder.example/");

    // 60,000 nested message/rfc822 parts: dropping mail-parser's result
    // recursively overflows any thread's stack.
    let mut nested = b"Content-Type: message/rfc822\r\n\r\n".repeat(60_000);
    nested.extend_from_slice(b"Subject: deep\r\n\r\nhttp://deep.example/\r\n");
    let s = one(&w, "192.0.2.1", &placeholder);
    replace_message(&s, 1, &nested);
    // Five levels deep is still searched for URLs.
    let mut shallow = b"Content-Type: message/rfc822\r\n\r\n".repeat(5);
    shallow.extend_from_slice(b"Subject: shallow\r\n\r\nhttp://shallow.example/\r\n");
    let s = one(&w, "192.0.2.2", &placeholder);
    replace_message(&s, 1, &shallow);
    // An 8 MB header line.
    let mut header = b"Subject: ".to_vec();
    header.extend(std::iter::repeat_n(b'a', 8 << 20));
    header.extend_from_slice(b"\r\n\r\nhttp://header.example/\r\n");
    let s = one(&w, "192.0.2.3", &placeholder);
    replace_message(&s, 1, &header);
    // 100,000 nested multiparts, and 200,000 parts side by side.
    let mut multi = Vec::new();
    for i in 0..100_000 {
        multi.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    let s = one(&w, "192.0.2.4", &placeholder);
    replace_message(&s, 1, &multi);
    let mut wide = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..200_000 {
        wide.extend_from_slice(b"--b\r\n\r\nhttp://wide.example/ x\r\n");
    }
    let s = one(&w, "192.0.2.5", &placeholder);
    replace_message(&s, 1, &wide);
    // Over --max-parse-size: counted and hashed, not parsed.
    let big = [
        b"Subject: big\r\n\r\n".to_vec(),
        b"http://big.example/ ".repeat(500_000),
    ]
    .concat();
    let s = one(&w, "192.0.2.6", &placeholder);
    replace_message(&s, 1, &big);
    // Binary garbage, and an empty message (mail-parser finds no message).
    let s = one(&w, "192.0.2.7", &placeholder);
    replace_message(
        &s,
        1,
        &(0..=255u8).cycle().take(1 << 20).collect::<Vec<u8>>(),
    );
    let s = one(&w, "192.0.2.8", &placeholder);
    replace_message(&s, 1, b"");

    let out = dir.path().join("out");
    let run = analyze_within(
        &[
            spool.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-geoip",
            "-q",
            "--max-parse-size",
            "9000000",
        ],
        Duration::from_secs(120),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(csv_rows(&out.join("sessions.csv")).len(), 8);
    let urls: Vec<String> = csv_rows(&out.join("urls.csv"))
        .into_iter()
        .map(|u| u["url"].clone())
        .collect();
    assert_eq!(
        urls,
        [
            "http://header.example/",
            "http://shallow.example/",
            "http://wide.example/"
        ]
    );
    let got = errors(&out);
    let parse = |reason: &str| {
        (
            "parse".to_string(),
            "messages/1.eml".to_string(),
            reason.to_string(),
        )
    };
    assert_eq!(
        got,
        [
            parse(&format!(
                "{} bytes, over --max-parse-size 9000000: body not analysed",
                big.len()
            )),
            parse("no message found (no header)"),
        ]
    );
    let messages = csv_rows(&out.join("messages.csv"));
    assert_eq!(messages.len(), 8);
    row(&messages, "sha256", &sha256_hex(&nested));
    row(&messages, "sha256", &sha256_hex(&big));
}

#[test]
fn a_parse_past_the_timeout_is_abandoned_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let w = Writer::open(&spool, "t");
    // Each takes tens of milliseconds to parse: far past a 1 ms limit.
    for i in 0..3 {
        let mut html = format!("Subject: {i}\r\nContent-Type: text/html\r\n\r\n").into_bytes();
        for j in 0..100_000 {
            html.extend_from_slice(
                format!("<a href=\"http://t{i}.example/{j}\">x</a>\r\n").as_bytes(),
            );
        }
        one(&w, "192.0.2.1", &html);
    }
    one(&w, "192.0.2.1", &message("http://small.example/"));
    let out = dir.path().join("out");
    let run = analyze_within(
        &[
            spool.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-geoip",
            "-q",
            "--parse-timeout",
            "0.001",
            "--jobs",
            "1",
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(csv_rows(&out.join("sessions.csv")).len(), 4);
    let errors = errors(&out);
    let abandoned = (
        "parse".to_string(),
        "messages/1.eml".to_string(),
        "parsing took longer than 0.001 s; abandoned".to_string(),
    );
    // The small message is parsed in well under 1 ms, but a loaded machine
    // may take longer: it is the only one allowed either way.
    assert!(errors.iter().all(|e| *e == abandoned), "{errors:?}");
    assert!((3..=4).contains(&errors.len()), "{errors:?}");
    assert_eq!(csv_rows(&out.join("messages.csv")).len(), 4);
}

/// Analyze under fire: a spool damaged in every way a copy, a crash or a
/// hostile local user can damage it. The run completes, each problem is a
/// row in `errors.csv` naming its session, and nothing outside the spool is
/// ever read: no byte of the secret below reaches any report.
#[test]
fn analyze_under_fire_reports_every_problem_and_stays_inside() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = outside.join("secret.eml");
    std::fs::write(&secret, message("http://secret-outside.example/")).unwrap();
    let w = Writer::open(&spool, "f");

    let good = one(&w, "198.51.100.1", &message("http://good.example/"));
    // A message file cut short after sealing (a copy that ran out of space).
    let cut = one(&w, "198.51.100.2", &message("http://cut.example/long/path"));
    let eml = cut.join("messages/1.eml");
    let full = std::fs::read(&eml).unwrap();
    std::fs::write(&eml, &full[..full.len() / 2]).unwrap();
    // A message the listener kept truncated (the client hung up mid-DATA).
    let partial = one(&w, "198.51.100.3", &message("http://partial.example/"));
    edit_manifest(&partial, |m| {
        let msg = &mut m["messages"][0];
        msg["truncated"] = true.into();
        msg["truncated_reason"] = "disconnected".into();
        msg["accepted"] = false.into();
    });
    // An empty manifest, and none at all.
    let empty = one(&w, "198.51.100.4", &message("http://empty.example/"));
    std::fs::write(empty.join("manifest.json"), b"").unwrap();
    let bare = one(&w, "198.51.100.5", &message("http://bare.example/"));
    std::fs::remove_file(bare.join("manifest.json")).unwrap();
    // The manifest itself a link to one outside.
    let linked = one(&w, "198.51.100.6", &message("http://linked.example/"));
    std::fs::rename(linked.join("manifest.json"), outside.join("manifest.json")).unwrap();
    std::os::unix::fs::symlink(outside.join("manifest.json"), linked.join("manifest.json"))
        .unwrap();
    // Manifests that point a message out of the session.
    let climb = one(&w, "198.51.100.7", &message("http://climb.example/"));
    let relative = format!(
        "{}/outside/secret.eml",
        vec![".."; climb.strip_prefix(dir.path()).unwrap().components().count()].join("/")
    );
    assert!(climb.join(&relative).is_file(), "the path does lead out");
    edit_manifest(&climb, |m| {
        m["messages"][0]["file"] = relative.clone().into()
    });
    let absolute = one(&w, "198.51.100.8", &message("http://absolute.example/"));
    edit_manifest(&absolute, |m| {
        m["messages"][0]["file"] = secret.display().to_string().into()
    });
    // A whole sensor directory linked in from outside the spool.
    let foreign = Writer::open(&outside.join("spool"), "f");
    one(
        &foreign,
        "198.51.100.9",
        &message("http://secret-outside.example/"),
    );
    std::os::unix::fs::symlink(outside.join("spool/f"), spool.join("elsewhere")).unwrap();

    let out = dir.path().join("out");
    let run = analyze(&[
        spool.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-geoip",
        "-q",
    ]);
    assert!(run.status.success(), "{run:?}");

    let rows = csv_rows(&out.join("errors.csv"));
    let about = |d: &Path| -> Vec<(String, String, String)> {
        let rel = d.strip_prefix(&spool).unwrap().display().to_string();
        rows.iter()
            .filter(|r| r["path"] == rel)
            .map(|r| (r["stage"].clone(), r["file"].clone(), r["reason"].clone()))
            .collect()
    };
    let one_error = |d: &Path, stage: &str, reason: &str| {
        let got = about(d);
        assert_eq!(got.len(), 1, "{}: {got:?}", d.display());
        assert_eq!(got[0].0, stage, "{got:?}");
        assert!(got[0].2.contains(reason), "{got:?} lacks {reason:?}");
    };
    one_error(&cut, "message", "differs from the manifest");
    one_error(&empty, "manifest", "not valid JSON");
    one_error(&bare, "manifest", "No such file");
    one_error(&linked, "manifest", "symbolic link");
    one_error(&climb, "message", "is not a path inside the session");
    one_error(&absolute, "message", "is not a path inside the session");
    assert!(about(&good).is_empty() && about(&partial).is_empty());
    let walk: Vec<&String> = rows
        .iter()
        .filter(|r| r["stage"] == "walk")
        .map(|r| &r["reason"])
        .collect();
    assert_eq!(walk.len(), 1, "{walk:?}");
    assert!(walk[0].contains("symbolic link") && walk[0].contains("not followed"));
    assert_eq!(rows.len(), 7, "one row per problem: {rows:?}");

    // The truncated message is reported as such, not as an error.
    let messages = csv_rows(&out.join("messages.csv"));
    let partial_row = row(
        &messages,
        "sha256",
        &sha256_hex(&message("http://partial.example/")),
    );
    assert_eq!(partial_row["truncated"], "true");
    // Sessions with a manifest are all counted; nothing from outside is.
    let sessions = csv_rows(&out.join("sessions.csv"));
    assert_eq!(sessions.len(), 5, "good, cut, partial, climb, absolute");
    // The HTML report (session views hold parts of messages) included.
    for entry in walkdir::WalkDir::new(&out) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let text = std::fs::read(entry.path()).unwrap();
        assert!(
            !text.windows(14).any(|w| w == b"secret-outside"),
            "a report holds bytes from outside the spool"
        );
    }
}
