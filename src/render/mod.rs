//! Templates: Handlebars over the context of SPEC §4, and the files they produce.
//!
//! Owns the compiled templates of one pod.yaml: every template file and every inline template
//! (process command, env values, cwd, dests, check, hook, apply, probe and reload commands).
//! Receives a [`Context`] (built from a cluster map); emits a [`Rendered`] value, which
//! [`RenderState::apply`] writes to disk, answering whether anything changed since ochopod's own
//! last render. Nothing here runs in the background: no shutdown to speak of.
//!
//! Handlebars runs in strict mode (a missing value is an error naming `file:line:col`) with HTML
//! escaping off (config files are not HTML). One gap of strict mode, by handlebars' design:
//! `{{#if missing}}` (and `#unless`) is silently false rather than an error, so a typo in an
//! `#if` condition goes unnoticed; test conditions on values that exist.
//!
//! `ochopod check` uses [`check`]: every template against [`sample_map`], every problem listed.

mod context;
mod error;
mod helpers;
mod rendered;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use handlebars::template::{Template, TemplateElement};
use handlebars::Handlebars;

pub use context::{sample_env, sample_map, Context};
pub use error::{Origin, RenderError};
pub use rendered::{Rendered, RenderedFile};
pub use write::{write_atomic, RenderState};

use crate::spec::{CommandLine, PodSpec, WriteMode};

/// The names of the pod.yaml fields that are commands, the one list: templates are compiled
/// under these names, errors name them, and [`Renderer::render_command`] renders them (hooks and
/// checks also by [`Renderer::render_field`]).
pub mod fields {
    pub const INITIALIZE: &str = "hooks.initialize";
    pub const PRE_START: &str = "hooks.pre_start";
    pub const CAN_CONFIGURE: &str = "hooks.can_configure";
    pub const CONFIGURED: &str = "hooks.configured";
    pub const SIGNALED: &str = "hooks.signaled";
    pub const TEAR_DOWN: &str = "hooks.tear_down";
    pub const FINALIZE: &str = "hooks.finalize";
    pub const READY: &str = "checks.ready.command";
    pub const SANITY: &str = "checks.sanity.command";
    /// Command fields, for [`super::Renderer::render_command`].
    pub const PROCESS: &str = "process.command";
    pub const APPLY: &str = "settings.apply.command";
    pub const PROBE: &str = "settings.probe.command";
    pub const RELOAD: &str = "process.reload.command";
}

/// A compiled command: names of the templates of its parts.
#[derive(Debug, Clone)]
enum CommandTemplate {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone)]
struct FileTemplate {
    source: PathBuf,
    body: String,
    dest: String,
    mode: u32,
    write: WriteMode,
}

/// Every template of one pod.yaml, compiled once.
pub struct Renderer {
    hb: Handlebars<'static>,
    /// Template name in `hb` → where it comes from, for error messages.
    origins: HashMap<String, Origin>,
    /// Template names in pod.yaml order, for `check`'s listing.
    order: Vec<String>,
    files: Vec<FileTemplate>,
    commands: HashMap<&'static str, CommandTemplate>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("templates", &self.order)
            .finish()
    }
}

/// Every template text of the spec: files first, then inline fields.
fn template_texts(spec: &PodSpec) -> Vec<&str> {
    let mut texts: Vec<&str> = Vec::new();
    for t in &spec.templates {
        texts.push(&t.text);
        texts.push(&t.dest);
    }
    let commands = [
        Some(&spec.process.command),
        spec.settings.apply.as_ref(),
        spec.settings.probe.as_ref().map(|p| &p.command),
        match spec.process.reload.as_ref().map(|r| &r.action) {
            Some(crate::spec::ReloadAction::Command(c)) => Some(c),
            _ => None,
        },
    ];
    for c in commands.into_iter().flatten() {
        match c {
            CommandLine::Exec(parts) => texts.extend(parts.iter().map(String::as_str)),
            CommandLine::Shell(s) => texts.push(s),
        }
    }
    texts.extend(spec.process.env.values().map(String::as_str));
    texts.extend(spec.process.cwd.as_deref());
    texts.extend(inline_fields(spec).into_iter().map(|(_, t)| t));
    texts
}

/// The hook and check commands the spec declares, by field name.
fn inline_fields(spec: &PodSpec) -> Vec<(&'static str, &str)> {
    let h = &spec.hooks;
    let c = &spec.checks;
    [
        (fields::INITIALIZE, h.initialize.as_deref()),
        (fields::PRE_START, h.pre_start.as_deref()),
        (fields::CAN_CONFIGURE, h.can_configure.as_deref()),
        (fields::CONFIGURED, h.configured.as_deref()),
        (fields::SIGNALED, h.signaled.as_deref()),
        (fields::TEAR_DOWN, h.tear_down.as_deref()),
        (fields::FINALIZE, h.finalize.as_deref()),
        (fields::READY, c.ready.as_ref().map(|r| r.command.as_str())),
        (fields::SANITY, c.sanity.as_ref().map(|r| r.command.as_str())),
    ]
    .into_iter()
    .filter_map(|(f, t)| t.map(|t| (f, t)))
    .collect()
}

/// Collects compile errors while registering templates, so `check` can list them all.
struct Builder<'s> {
    spec: &'s PodSpec,
    r: Renderer,
    errors: Vec<RenderError>,
}

impl Builder<'_> {
    /// Compiles `text` under `name`; returns the name for later rendering.
    fn add(&mut self, name: String, origin: Origin, text: &str) -> String {
        match self.r.hb.register_template_string(&name, text) {
            Err(e) => self.errors.push(RenderError::compile(&origin, e)),
            Ok(()) => {
                if let Some((line, col)) = self.r.hb.get_template(&name).and_then(first_partial) {
                    self.errors.push(RenderError::Template {
                        origin: origin.clone(),
                        line: Some(line),
                        col: Some(col),
                        message: "partials and decorators ({{> name}}, {{#*inline}}) are not supported: \
                                  each template stands alone"
                            .to_owned(),
                    });
                }
            }
        }
        self.r.origins.insert(name.clone(), origin);
        self.r.order.push(name.clone());
        name
    }

    fn field(&mut self, field: String, text: &str) -> String {
        let origin = Origin::Field {
            pod_yaml: self.spec.path.clone(),
            field: field.clone(),
        };
        self.add(field, origin, text)
    }

    fn command(&mut self, field: &'static str, c: &CommandLine) {
        let compiled = match c {
            CommandLine::Exec(parts) => CommandTemplate::Exec(
                parts
                    .iter()
                    .enumerate()
                    .map(|(i, p)| self.field(format!("{field}[{i}]"), p))
                    .collect(),
            ),
            CommandLine::Shell(s) => CommandTemplate::Shell(self.field(field.to_owned(), s)),
        };
        self.r.commands.insert(field, compiled);
    }
}

/// Where `t` first uses a partial (`{{> name}}`, `{{#> name}}`) or a decorator (`{{#*inline}}`,
/// which only serves partials), if it does: ochopod refuses them. Every template file and every
/// pod.yaml field is registered in one Handlebars registry under a name, so a partial could
/// include another template, and handlebars only stops a template including itself directly: two
/// hooks including each other, or an inline partial including itself, recurse until the stack
/// overflows, which aborts `ochopod check` and PID 1 rather than reporting a `file:line:col`.
fn first_partial(t: &Template) -> Option<(usize, usize)> {
    for (i, e) in t.elements.iter().enumerate() {
        match e {
            TemplateElement::PartialExpression(_)
            | TemplateElement::PartialBlock(_)
            | TemplateElement::DecoratorExpression(_)
            | TemplateElement::DecoratorBlock(_) => {
                return Some(t.mapping.get(i).map_or((1, 1), |m| (m.0, m.1)));
            }
            TemplateElement::HelperBlock(h) => {
                let inner = [&h.template, &h.inverse].into_iter().flatten();
                if let Some(at) = inner.filter_map(first_partial).next() {
                    return Some(at);
                }
            }
            _ => {}
        }
    }
    None
}

/// Compiles every template of `spec`; `lenient_foreign_ports` as in [`helpers::register`].
fn compile(spec: &PodSpec, lenient_foreign_ports: bool) -> (Renderer, Vec<RenderError>) {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    helpers::register(&mut hb, lenient_foreign_ports);
    let mut b = Builder {
        spec,
        r: Renderer {
            hb,
            origins: HashMap::new(),
            order: Vec::new(),
            files: Vec::new(),
            commands: HashMap::new(),
            env: Vec::new(),
            cwd: None,
        },
        errors: Vec::new(),
    };
    for (i, t) in spec.templates.iter().enumerate() {
        let body = b.add(
            format!("file:{}", t.source.display()),
            Origin::File(t.source.clone()),
            &t.text,
        );
        let dest = b.field(format!("templates[{i}].dest"), &t.dest);
        b.r.files.push(FileTemplate {
            source: t.source.clone(),
            body,
            dest,
            mode: t.mode,
            write: t.write,
        });
    }
    b.command(fields::PROCESS, &spec.process.command);
    if let Some(c) = &spec.settings.apply {
        b.command(fields::APPLY, c);
    }
    if let Some(p) = &spec.settings.probe {
        b.command(fields::PROBE, &p.command);
    }
    if let Some(crate::spec::ReloadAction::Command(c)) = spec.process.reload.as_ref().map(|r| &r.action) {
        b.command(fields::RELOAD, c);
    }
    for (k, v) in &spec.process.env {
        let name = b.field(format!("process.env.{k}"), v);
        b.r.env.push((k.clone(), name));
    }
    if let Some(cwd) = &spec.process.cwd {
        b.r.cwd = Some(b.field("process.cwd".to_owned(), cwd));
    }
    // Hooks and checks are shell strings: commands too, so that every run goes through
    // `render_command`.
    for (field, text) in inline_fields(spec) {
        let name = b.field(field.to_owned(), text);
        b.r.commands.insert(field, CommandTemplate::Shell(name));
    }
    (b.r, b.errors)
}

impl Renderer {
    /// Compiles every template file and inline template of `spec`; fails on the first syntax
    /// error (`templates/x.hbs:LINE:COL: message`, or `pod.yaml: field:LINE:COL: message`).
    pub fn new(spec: &PodSpec) -> Result<Renderer, RenderError> {
        let (r, errors) = compile(spec, false);
        match errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(r),
        }
    }

    fn render_name(&self, name: &str, ctx: &Context) -> Result<String, RenderError> {
        let origin = self
            .origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| Origin::File(PathBuf::from(name)));
        self.hb
            .render_with_context(name, ctx.handlebars())
            .map_err(|e| RenderError::from_handlebars(&origin, e))
    }

    /// Renders everything the process needs: files (dest, content), command, env and cwd.
    /// A relative dest is taken relative to the rendered cwd, where the process will look for
    /// it (`conf/zoo.cfg`), or to ochopod's own folder when there is no cwd.
    pub fn render_pod(&self, ctx: &Context) -> Result<Rendered, RenderError> {
        let cwd = self.cwd.as_ref().map(|n| self.render_name(n, ctx)).transpose()?;
        if let (Some(name), Some(cwd)) = (&self.cwd, &cwd) {
            // Relative dests are joined onto it: the same rules as a dest.
            if let Some(reason) = unsafe_dest(cwd.trim()) {
                return Err(RenderError::UnsafeCwd {
                    origin: self.origin(name),
                    cwd: cwd.clone(),
                    reason,
                });
            }
        }
        let mut files: Vec<RenderedFile> = Vec::new();
        let mut seen: HashMap<PathBuf, &str> = HashMap::new();
        for t in &self.files {
            let dest = self.render_name(&t.dest, ctx)?;
            let dest = dest.trim();
            if let Some(reason) = unsafe_dest(dest) {
                return Err(RenderError::UnsafeDest {
                    origin: self.origin(&t.dest),
                    template: t.source.clone(),
                    dest: dest.to_owned(),
                    reason,
                });
            }
            let dest = match &cwd {
                Some(cwd) if Path::new(dest).is_relative() => Path::new(cwd).join(dest),
                _ => PathBuf::from(dest),
            };
            if let Some(first) = seen.insert(dest.clone(), &t.body) {
                return Err(RenderError::DuplicateDest {
                    dest,
                    first: self.origin(first),
                    second: self.origin(&t.body),
                });
            }
            files.push(RenderedFile {
                content: self.render_name(&t.body, ctx)?,
                dest,
                mode: t.mode,
                write: t.write,
            });
        }
        let env = self
            .env
            .iter()
            .map(|(k, n)| Ok((k.clone(), self.render_name(n, ctx)?)))
            .collect::<Result<_, RenderError>>()?;
        Ok(Rendered {
            files,
            command: self.render_command(fields::PROCESS, ctx)?,
            env,
            cwd,
        })
    }

    fn origin(&self, name: &str) -> Origin {
        self.origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| Origin::File(PathBuf::from(name)))
    }

    /// Whether the pod.yaml declares the inline template `field` (see [`fields`]).
    pub fn has_field(&self, field: &str) -> bool {
        self.origins.contains_key(field)
    }

    /// Renders a declared hook or check command (see [`fields`]).
    pub fn render_field(&self, field: &str, ctx: &Context) -> Result<String, RenderError> {
        if !self.has_field(field) {
            return Err(RenderError::UnknownField {
                field: field.to_owned(),
            });
        }
        self.render_name(field, ctx)
    }

    /// Renders a declared command (any of [`fields`]; a hook or check is a shell string).
    pub fn render_command(&self, field: &str, ctx: &Context) -> Result<CommandLine, RenderError> {
        match self.commands.get(field) {
            Some(CommandTemplate::Exec(parts)) => Ok(CommandLine::Exec(
                parts
                    .iter()
                    .map(|p| self.render_name(p, ctx))
                    .collect::<Result<_, _>>()?,
            )),
            Some(CommandTemplate::Shell(n)) => Ok(CommandLine::Shell(self.render_name(n, ctx)?)),
            None => Err(RenderError::UnknownField {
                field: field.to_owned(),
            }),
        }
    }
}

/// Why a rendered `templates[].dest` is refused, if it is: the second line of defence behind the
/// validation of pod fields at the boundary (a `host` of `../../x` must not choose where a file
/// goes). Empty; any control character (NUL cannot be in a path, a newline has no business in
/// one); or a `..` component, which could leave the folder the author meant, and which no
/// legitimate dest needs (write the path without it). Checked before anything is written.
fn unsafe_dest(dest: &str) -> Option<&'static str> {
    if dest.is_empty() {
        Some("it is empty")
    } else if dest.chars().any(char::is_control) {
        Some("it holds a control character (NUL, newline, ...)")
    } else if Path::new(dest)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        Some("it has a `..` component")
    } else {
        None
    }
}

/// `ochopod check`'s template half: compiles every template of `spec` and renders each one
/// against [`sample_map`] with [`sample_env`]`(spec, env)`, returning every problem found (empty:
/// all good). Dependencies' ports are unknown in the sample, so `grep`/`port` on their pods take
/// the port as is; ports of the pod's own cluster are checked.
pub fn check(spec: &PodSpec, env: &BTreeMap<String, String>) -> Vec<RenderError> {
    let (r, mut errors) = compile(spec, true);
    let map = sample_map(spec);
    let ctx = match Context::new(spec, &map, None, &sample_env(spec, env)) {
        Ok(ctx) => ctx,
        Err(e) => {
            errors.push(e);
            return errors;
        }
    };
    let failed: Vec<Origin> = errors
        .iter()
        .filter_map(|e| match e {
            RenderError::Template { origin, .. } => Some(origin.clone()),
            _ => None,
        })
        .collect();
    for name in &r.order {
        if failed.contains(&r.origin(name)) {
            continue;
        }
        if let Err(e) = r.render_name(name, &ctx) {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        // The whole render too: dests may collide or render empty.
        if let Err(e) = r.render_pod(&ctx) {
            errors.push(e);
        }
    }
    errors
}
