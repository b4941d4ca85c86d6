//! Giving up root once the sockets are bound (`--user`, `--group`).
//!
//! Ports 25, 465 and 587 need root (or `CAP_NET_BIND_SERVICE`) to bind, and
//! nothing after that does: the process binds every socket, makes the spool
//! and state directories its user's, then calls setgroups, setgid and setuid
//! before it opens the spool or accepts a connection. An attacker who found
//! a hole in the SMTP code would find an unprivileged process.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The account to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Looks `user` (and `group`, else the user's primary group) up in the
/// system's account database.
pub fn lookup(user: &str, group: Option<&str>) -> Result<Account, String> {
    let (uid, primary_gid) = user_ids(user)?.ok_or_else(|| {
        format!(
            "unknown user {user:?} (--user): no such account; create one with \
             `useradd --system --no-create-home --shell /usr/sbin/nologin {user}`"
        )
    })?;
    let gid = match group {
        None => primary_gid,
        Some(name) => group_id(name)?
            .ok_or_else(|| format!("unknown group {name:?} (--group): no such group"))?,
    };
    Ok(Account {
        user: user.to_string(),
        uid,
        gid,
    })
}

/// A name as a C string, or the reason it cannot be one.
fn c_name(name: &str, what: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("{what} {name:?} contains a NUL byte"))
}

/// The buffer size the `_r` lookups ask for, with a fallback.
fn lookup_buffer() -> Vec<libc::c_char> {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_GETPW_R_SIZE_MAX) };
    vec![0; if size > 0 { size as usize } else { 16 * 1024 }.max(16 * 1024)]
}

fn user_ids(name: &str) -> Result<Option<(libc::uid_t, libc::gid_t)>, String> {
    let c = c_name(name, "user")?;
    let mut buffer = lookup_buffer();
    loop {
        // SAFETY: passwd is plain data; getpwnam_r fills it and points its
        // strings into `buffer`, which outlives every use below.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                c.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up user {name:?}: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok((!found.is_null()).then_some((entry.pw_uid, entry.pw_gid)));
    }
}

fn group_id(name: &str) -> Result<Option<libc::gid_t>, String> {
    let c = c_name(name, "group")?;
    let mut buffer = lookup_buffer();
    loop {
        // SAFETY: as in user_ids, for struct group.
        let mut entry: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                c.as_ptr(),
                &mut entry,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(format!(
                "cannot look up group {name:?}: {}",
                io::Error::from_raw_os_error(rc)
            ));
        }
        return Ok((!found.is_null()).then_some(entry.gr_gid));
    }
}

/// The effective user id.
pub fn effective_uid() -> libc::uid_t {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Creates each missing directory of `dirs` (and missing parents) mode
/// 0700, owned by `account`, so that the unprivileged process can write
/// there. Directories that exist are left as they are.
pub fn prepare_dirs(dirs: &[&Path], account: &Account) -> Result<(), String> {
    for dir in dirs {
        for made in
            create_missing(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?
        {
            let c = CString::new(made.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("{}: path contains a NUL byte", made.display()))?;
            // SAFETY: lchown reads a NUL-terminated path; it does not follow a link.
            if unsafe { libc::lchown(c.as_ptr(), account.uid, account.gid) } != 0 {
                return Err(format!(
                    "cannot give {} to user {}: {}",
                    made.display(),
                    account.user,
                    io::Error::last_os_error()
                ));
            }
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents; returns those it created, outermost first.
fn create_missing(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(path) = at {
        if path.as_os_str().is_empty() || std::fs::symlink_metadata(path).is_ok() {
            break;
        }
        missing.push(path.to_path_buf());
        at = path.parent();
    }
    missing.reverse();
    for path in &missing {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(missing)
}

/// Becomes `account` for good: supplementary groups, group, then user (in
/// that order: after setuid the others are no longer allowed), and checks
/// that root cannot be taken back.
pub fn drop_to(account: &Account) -> Result<(), String> {
    let fail = |step: &str| {
        format!(
            "cannot become user {} ({step}): {}",
            account.user,
            io::Error::last_os_error()
        )
    };
    // SAFETY: these calls take plain integers and one pointer to one gid.
    // glibc applies them to every thread of the process.
    unsafe {
        if libc::setgroups(1, &account.gid) != 0 {
            return Err(fail("setgroups"));
        }
        if libc::setgid(account.gid) != 0 {
            return Err(fail("setgid"));
        }
        if libc::setuid(account.uid) != 0 {
            return Err(fail("setuid"));
        }
        if account.uid != 0 && (libc::setuid(0) == 0 || libc::geteuid() == 0) {
            return Err(format!(
                "still able to become root after switching to user {}",
                account.user
            ));
        }
        // Files the spool writer creates are 0600 anyway; this covers the rest.
        libc::umask(0o077);
    }
    Ok(())
}

/// Applies `--user`/`--group` after the sockets are bound: makes `dirs`
/// the account's and switches to it. Without root it is an error, unless
/// the process already runs as that user.
pub fn apply(user: &str, group: Option<&str>, dirs: &[&Path]) -> Result<Account, String> {
    let account = lookup(user, group)?;
    let euid = effective_uid();
    if euid != 0 {
        // SAFETY: getegid cannot fail.
        let egid = unsafe { libc::getegid() };
        if euid == account.uid && egid == account.gid {
            return Ok(account);
        }
        return Err(format!(
            "--user {user} needs root to switch users (running as uid {euid})"
        ));
    }
    prepare_dirs(dirs, &account)?;
    drop_to(&account)?;
    Ok(account)
}

/// The warning for a sensor left running as root.
pub const ROOT_WARNING: &str = "running as root: an attacker who breaks the SMTP code owns the \
     host. Give --user latrine (bind as root, then drop), or run as an ordinary user with \
     CAP_NET_BIND_SERVICE (systemd: User=latrine, AmbientCapabilities=CAP_NET_BIND_SERVICE; \
     see scripts/systemd/latrine.service)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_unknown_accounts() {
        let root = lookup("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = lookup("no-such-user-latrine-test", None).unwrap_err();
        assert!(e.contains("unknown user") && e.contains("useradd"), "{e}");
        let e = lookup("root", Some("no-such-group-latrine-test")).unwrap_err();
        assert!(e.contains("unknown group"), "{e}");
        assert!(lookup("ro\0ot", None).unwrap_err().contains("NUL"));
    }

    #[test]
    fn creates_missing_parents_outermost_first() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        let made = create_missing(&deep).unwrap();
        assert_eq!(
            made,
            vec![dir.path().join("a"), dir.path().join("a/b"), deep.clone()]
        );
        assert!(create_missing(&deep).unwrap().is_empty());
    }
}
