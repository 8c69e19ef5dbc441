//! Writing rendered files, and ochopod's memory of its last render.
//!
//! Owns `<OCHOPOD_STATE_DIR>/render-<uuid>.json`: what the last render produced (content digests,
//! modes, command, env, cwd), so that "changed" means different from ochopod's own last render
//! (SPEC §3), never different from what is on disk (the process may rewrite its files).
//! Receives [`Rendered`] values from the supervise loop; emits files and a `changed` answer.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::fsutil::write_atomic;

use super::{RenderError, Rendered};
use crate::spec::{CommandLine, WriteMode};

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> RenderError + 'a {
    move |source| RenderError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

/// Whether something (a file, a folder, a dangling symlink) is at `path`.
fn exists(path: &Path) -> Result<bool, RenderError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path, "stat")(e)),
    }
}

/// What a render produced, as recorded: the canonical form [`Rendered::digest`] hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    files: BTreeMap<String, FileRecord>,
    command: CommandRecord,
    env: BTreeMap<String, String>,
    cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    sha256: String,
    mode: u32,
    if_absent: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CommandRecord {
    Exec(Vec<String>),
    Shell(String),
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Record {
    pub(super) fn of(r: &Rendered) -> Record {
        Record {
            files: r
                .files
                .iter()
                .map(|f| {
                    let rec = FileRecord {
                        sha256: sha256_hex(f.content.as_bytes()),
                        mode: f.mode,
                        if_absent: f.write == WriteMode::IfAbsent,
                    };
                    (f.dest.to_string_lossy().into_owned(), rec)
                })
                .collect(),
            command: match &r.command {
                CommandLine::Exec(parts) => CommandRecord::Exec(parts.clone()),
                CommandLine::Shell(s) => CommandRecord::Shell(s.clone()),
            },
            env: r.env.clone(),
            cwd: r.cwd.clone(),
        }
    }

    pub(super) fn digest(&self) -> String {
        // Cannot fail: only strings, integers and string-keyed maps.
        sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }

    /// Whether the process would see the same thing. The content of an `if-absent` file is
    /// left out: once written, it belongs to the process (ZooKeeper's dynamic config), so a new
    /// render of it changes nothing.
    pub(super) fn same_as(&self, new: &Record) -> bool {
        self.command == new.command
            && self.env == new.env
            && self.cwd == new.cwd
            && self.files.len() == new.files.len()
            && self.files.iter().zip(&new.files).all(|((d1, a), (d2, b))| {
                d1 == d2
                    && a.mode == b.mode
                    && a.if_absent == b.if_absent
                    && (a.if_absent || a.sha256 == b.sha256)
            })
    }
}

/// The state file: a version for future changes of shape, the digest for humans and logs.
#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    digest: String,
    render: Record,
}

const STATE_VERSION: u32 = 1;

/// ochopod's memory of its last render, in `<state_dir>/render-<uuid>.json`. One per pod; owned
/// by the supervise loop. With the state dir on a persistent volume, a container restart with
/// the same cluster map is "unchanged".
#[derive(Debug)]
pub struct RenderState {
    path: PathBuf,
    last: Option<Record>,
}

impl RenderState {
    /// Reads the last render recorded for pod `uuid`, if any. A state file that cannot be
    /// parsed (an older ochopod, a torn disk) is ignored with a warning: the next render then
    /// counts as changed, which is the safe answer.
    pub fn open(state_dir: &Path, uuid: &str) -> Result<RenderState, RenderError> {
        if uuid.is_empty()
            || !uuid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(RenderError::BadUuid {
                uuid: uuid.to_owned(),
            });
        }
        let path = state_dir.join(format!("render-{uuid}.json"));
        let last = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(s) if s.version == STATE_VERSION => Some(s.render),
                Ok(s) => {
                    tracing::warn!(path = %path.display(), version = s.version, "unknown render state version, ignored");
                    None
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable render state, ignored");
                    None
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&path, "read")(e)),
        };
        Ok(RenderState { path, last })
    }

    /// The digest of the last recorded render, if any.
    pub fn last_digest(&self) -> Option<String> {
        self.last.as_ref().map(Record::digest)
    }

    /// Whether `rendered` differs from the last recorded render (true when there is none),
    /// without writing anything.
    pub fn differs(&self, rendered: &Rendered) -> bool {
        self.changed(&Record::of(rendered))
    }

    fn changed(&self, new: &Record) -> bool {
        !self.last.as_ref().is_some_and(|old| old.same_as(new))
    }

    /// Writes the files and records the render; answers whether it changed (see [`Self::differs`]).
    ///
    /// * `always` files are written when their content or mode differs from the last recorded
    ///   render, or when they are missing on disk (an unchanged render still restores them);
    /// * `if-absent` files only when nothing is at their dest.
    ///
    /// The record is updated only after every file is written, so a failed apply is retried in
    /// full and still counts as changed next time.
    pub fn apply(&mut self, rendered: &Rendered) -> Result<bool, RenderError> {
        let new = Record::of(rendered);
        let changed = self.changed(&new);
        for file in &rendered.files {
            let key = file.dest.to_string_lossy();
            let write = match file.write {
                WriteMode::IfAbsent => !exists(&file.dest)?,
                WriteMode::Always => {
                    let recorded = self.last.as_ref().and_then(|l| l.files.get(key.as_ref()));
                    recorded != new.files.get(key.as_ref()) || !exists(&file.dest)?
                }
            };
            if write {
                write_atomic(&file.dest, file.content.as_bytes(), file.mode)?;
                tracing::debug!(dest = %file.dest.display(), mode = format!("{:o}", file.mode), "wrote");
            }
        }
        if self.last.as_ref() == Some(&new) {
            // Same record: spare the disk a rewrite (an `on` with an unchanged map is common).
            return Ok(false);
        }
        let state = StateFile {
            version: STATE_VERSION,
            digest: new.digest(),
            render: new,
        };
        // Cannot fail: only strings, integers and string-keyed maps.
        let bytes = serde_json::to_vec_pretty(&state).unwrap_or_default();
        write_atomic(&self.path, &bytes, 0o600)?;
        self.last = Some(state.render);
        Ok(changed)
    }
}
