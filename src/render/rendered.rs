//! What a render produces: [`Rendered`], the files, command, env and cwd of one cluster map, and
//! how `ochopod render` prints it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use super::write;
use crate::spec::{CommandLine, WriteMode};

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub dest: PathBuf,
    pub content: String,
    pub mode: u32,
    pub write: WriteMode,
}

/// Everything the process needs for one cluster map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub files: Vec<RenderedFile>,
    pub command: CommandLine,
    /// `process.env`, rendered (added to the pod's own environment by the caller).
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
}

impl Rendered {
    /// Whether the process would see the same thing as with `other` (what "changed" means for
    /// `on`, see [`super::RenderState::apply`]; an `if-absent` file's content does not count).
    pub fn same_as(&self, other: &Rendered) -> bool {
        write::Record::of(self).same_as(&write::Record::of(other))
    }

    /// sha256 (hex) of a canonical form of everything rendered: same digest, same render.
    pub fn digest(&self) -> String {
        write::Record::of(self).digest()
    }
}

/// What `ochopod render` prints: each file under a `==> dest (mode, write)` header, then the
/// command, cwd and env.
impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let write = match file.write {
                WriteMode::Always => "always",
                WriteMode::IfAbsent => "if-absent",
            };
            writeln!(f, "==> {} ({:04o}, {write}) <==", file.dest.display(), file.mode)?;
            f.write_str(&file.content)?;
            if !file.content.is_empty() && !file.content.ends_with('\n') {
                writeln!(f)?;
            }
        }
        writeln!(f, "==> process <==")?;
        match &self.command {
            CommandLine::Exec(parts) => writeln!(f, "command: {parts:?}")?,
            CommandLine::Shell(s) => writeln!(f, "command: /bin/sh -c {s:?}")?,
        }
        if let Some(cwd) = &self.cwd {
            writeln!(f, "cwd: {cwd}")?;
        }
        for (k, v) in &self.env {
            writeln!(f, "env: {k}={v}")?;
        }
        Ok(())
    }
}
