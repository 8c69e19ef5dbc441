//! Files written whole or not at all: what the renderer writes for the process, and what the
//! state dir holds (`uuid`, `seq`, the render record). Used by `render`, `zk` and `runtime`; it
//! depends on nothing of ochopod's.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A write that failed: the path, what was being done, and why. Whoever asked for the write
/// decides whether it is retried (a render is retried with the leader's next configuration).
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {op}: {source}", .path.display())]
pub struct WriteError {
    pub path: PathBuf,
    pub op: &'static str,
    #[source]
    pub source: io::Error,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Distinguishes temp files of concurrent writers in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `content` to `dest` with permissions `mode`, creating missing parent folders.
///
/// Atomic: a temp file in the same folder is written, chmod'ed and fsync'ed, then renamed over
/// `dest`, so the process never reads a half-written file. When `dest` is a mount point (a file
/// bind-mounted into the container by Docker or Kubernetes), rename fails with EBUSY (or EXDEV),
/// and the file is rewritten in place instead: the only way to change a mounted file.
pub fn write_atomic(dest: &Path, content: &[u8], mode: u32) -> Result<(), WriteError> {
    let name = dest.file_name().ok_or_else(|| WriteError {
        path: dest.to_path_buf(),
        op: "write (not a file name)",
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::create_dir_all(dir).map_err(io_err(dir, "create folder"))?;
    let tmp = dir.join(format!(
        ".{}.ochopod-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(content)?;
        // Explicitly, so the umask does not decide the declared mode.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, "write temp file")(e));
    }
    match fs::rename(&tmp, dest) {
        Ok(()) => {
            // Best effort: makes the rename itself durable; some filesystems refuse it.
            if let Ok(d) = fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY) | Some(libc::EXDEV)) => {
            let _ = fs::remove_file(&tmp);
            tracing::debug!(dest = %dest.display(), "mount point: writing in place");
            write_in_place(dest, content, mode)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err(dest, "rename temp file onto")(e))
        }
    }
}

fn write_in_place(dest: &Path, content: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(dest)
        .map_err(io_err(dest, "open for writing"))?;
    f.write_all(content).map_err(io_err(dest, "write"))?;
    // chmod only when needed: a mounted file may belong to someone else.
    let current = f.metadata().map_err(io_err(dest, "stat"))?.permissions().mode() & 0o7777;
    if current != mode & 0o7777 {
        f.set_permissions(Permissions::from_mode(mode))
            .map_err(io_err(dest, "chmod"))?;
    }
    f.sync_all().map_err(io_err(dest, "fsync"))
}
