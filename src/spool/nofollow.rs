//! Directory walks that never follow a symbolic link, for sealing.
//!
//! A sealed session's path below the spool root (`<sensor>/<YYYY>/<MM>/<DD>`)
//! is walked one component at a time with `openat(O_NOFOLLOW|O_DIRECTORY)`,
//! and the session is renamed into the last directory by its descriptor,
//! without replacing anything. A link planted anywhere on that path (by a
//! hostile local user, or a careless copy) therefore cannot redirect
//! evidence: the seal fails, and the session stays in `.incoming` for the
//! operator. The root itself is the operator's choice and may be a link.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::other("path contains a NUL byte"))
}

/// `openat(dir, name, O_DIRECTORY|O_NOFOLLOW)`.
fn open_dir_at(dir: &OwnedFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: `dir` is an open descriptor and `name` is NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `root/rel` as a directory, creating missing components (mode 0700),
/// never following a symbolic link below `root`. `rel` must be relative and
/// made of plain names.
pub fn open_dirs_below(root: &Path, rel: &Path) -> io::Result<OwnedFd> {
    let mut dir: OwnedFd = File::open(root)?.into();
    let mut walked = root.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a plain relative path", rel.display()),
            ));
        };
        walked.push(name);
        let c_name = c_string(name.as_bytes())?;
        let opened = match open_dir_at(&dir, &c_name) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: as above; mkdirat does not follow a final link.
                let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c_name.as_ptr(), 0o700) };
                let made = if rc == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                };
                match made {
                    Ok(()) => open_dir_at(&dir, &c_name),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        open_dir_at(&dir, &c_name)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        };
        dir = opened.map_err(|e| refusal(&walked, e))?;
    }
    Ok(dir)
}

/// A clear error for a component that is a link or not a directory.
fn refusal(path: &Path, e: io::Error) -> io::Error {
    // O_NOFOLLOW|O_DIRECTORY on a link gives ELOOP or ENOTDIR; the second
    // look is only for the message.
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR) if is_link => io::Error::other(format!(
            "{} is a symbolic link: not followed (evidence is never written through a link)",
            path.display()
        )),
        Some(libc::ENOTDIR) => io::Error::other(format!("{} is not a directory", path.display())),
        _ => io::Error::new(e.kind(), format!("{}: {e}", path.display())),
    }
}

/// Renames `from` to `name` inside the directory `dir`, failing (never
/// replacing) when `name` exists there.
pub fn rename_into(from: &Path, dir: &OwnedFd, name: &str) -> io::Result<()> {
    let c_from = c_string(from.as_os_str().as_bytes())?;
    let c_name = c_string(name.as_bytes())?;
    // SAFETY: both paths are NUL-terminated and `dir` is an open descriptor.
    let mut rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            dir.as_raw_fd(),
            c_name.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
        // A file system without RENAME_NOREPLACE: look, then rename (only
        // the listener writes here, so the gap is not a race with itself).
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: as above; fstatat fills `stat` or fails.
        let exists = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c_name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } == 0;
        if exists {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} already exists: not replaced"),
            ));
        }
        // SAFETY: as above.
        rc = unsafe {
            libc::renameat(
                libc::AT_FDCWD,
                c_from.as_ptr(),
                dir.as_raw_fd(),
                c_name.as_ptr(),
            )
        };
    }
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot move {} into place as {name}: {e}", from.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_creates_and_refuses_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("spool");
        std::fs::create_dir(&root).unwrap();
        let fd = open_dirs_below(&root, Path::new("s/2026/11/27")).unwrap();
        assert!(root.join("s/2026/11/27").is_dir());
        std::fs::create_dir(tmp.path().join("src")).unwrap();
        rename_into(&tmp.path().join("src"), &fd, "id").unwrap();
        assert!(root.join("s/2026/11/27/id").is_dir());
        std::fs::create_dir(tmp.path().join("src2")).unwrap();
        let e = rename_into(&tmp.path().join("src2"), &fd, "id").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");

        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("s/2026/12")).unwrap();
        let e = open_dirs_below(&root, Path::new("s/2026/12/01")).unwrap_err();
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        assert!(open_dirs_below(&root, Path::new("../x")).is_err());
    }
}
