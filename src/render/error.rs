//! Errors of the renderer, named like rustc's: `templates/zoo.cfg.hbs:12:5: message`.

use std::fmt;
use std::path::PathBuf;

use handlebars::RenderErrorReason;

/// Where a template comes from: a template file, or a field of the pod.yaml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `templates[].source`, as resolved by the spec (`pods/templates/zoo.cfg.hbs`).
    File(PathBuf),
    /// An inline template: `process.env.JVMFLAGS`, `hooks.pre_start`, `templates[0].dest`, ...
    Field { pod_yaml: PathBuf, field: String },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Field { pod_yaml, field } => write!(f, "{}: {field}", pod_yaml.display()),
        }
    }
}

/// `origin:line:col` (line and column within the template), or `origin` when unknown.
fn at(origin: &Origin, line: &Option<usize>, col: &Option<usize>) -> String {
    match (line, col) {
        (Some(l), Some(c)) => format!("{origin}:{l}:{c}"),
        _ => origin.to_string(),
    }
}

/// Errors of this module. Template errors are the user's to fix: fatal for `check` and `run`'s
/// first render; on a later `on`, the pod answers with the error and the leader retries the
/// configuration later (with its backoff). I/O errors are retried the same way.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template does not compile, or does not render against this context.
    #[error("{}: {message}", at(.origin, .line, .col))]
    Template {
        origin: Origin,
        line: Option<usize>,
        col: Option<usize>,
        message: String,
    },
    /// The cluster map's `key` is not one of its pods: the sender's bug.
    #[error("the cluster map's key {key:?} is not one of its pods")]
    NotInMap { key: String },
    /// [`Renderer::render_field`](super::Renderer::render_field) asked for a field the pod.yaml does not declare.
    #[error("no template for {field}: the pod.yaml does not declare it")]
    UnknownField { field: String },
    /// Two templates render to the same file.
    #[error("{}: renders to {}, as {} does", .second, .dest.display(), .first)]
    DuplicateDest {
        dest: PathBuf,
        first: Origin,
        second: Origin,
    },
    /// A rendered `templates[].dest` that is empty, holds a control character or a `..`
    /// component (see `unsafe_dest`): nothing of that render is written.
    #[error("{origin}: refused to write {} to {dest:?}: {reason}", .template.display())]
    UnsafeDest {
        origin: Origin,
        /// `templates[].source`.
        template: PathBuf,
        dest: String,
        reason: &'static str,
    },
    /// A rendered `process.cwd` that is empty, holds a control character or a `..` component.
    #[error("{origin}: refused the working directory {cwd:?}: {reason}")]
    UnsafeCwd {
        origin: Origin,
        cwd: String,
        reason: &'static str,
    },
    /// Writing a rendered file or the render record.
    #[error(transparent)]
    Write(#[from] crate::fsutil::WriteError),
    #[error("{}: cannot {op}: {source}", .path.display())]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A pod uuid that cannot name a state file.
    #[error("pod uuid {uuid:?} cannot name a state file")]
    BadUuid { uuid: String },
}

impl RenderError {
    pub(super) fn from_handlebars(origin: &Origin, e: handlebars::RenderError) -> RenderError {
        let (line, col) = (e.line_no, e.column_no);
        if let RenderErrorReason::TemplateError(t) = e.reason() {
            let (line, col) = t.pos().map_or((None, None), |(l, c)| (Some(l), Some(c)));
            return RenderError::Template {
                origin: origin.clone(),
                line,
                col,
                message: t.reason().to_string(),
            };
        }
        let message = match e.reason() {
            RenderErrorReason::MissingVariable(Some(path)) => {
                format!("`{path}` is not in the context (strict mode)")
            }
            RenderErrorReason::MissingVariable(None) => {
                "a value is missing from the context (strict mode)".to_owned()
            }
            RenderErrorReason::HelperNotFound(name) => {
                format!("unknown helper `{name}` (ochopod adds grep, port, dep and sh)")
            }
            reason => reason.to_string(),
        };
        RenderError::Template {
            origin: origin.clone(),
            line,
            col,
            message,
        }
    }

    pub(super) fn compile(origin: &Origin, e: handlebars::TemplateError) -> RenderError {
        let (line, col) = e.pos().map_or((None, None), |(l, c)| (Some(l), Some(c)));
        RenderError::Template {
            origin: origin.clone(),
            line,
            col,
            message: e.reason().to_string(),
        }
    }
}
