//! Placeholder for the renderer (being written on the `render` branch); same API, minimal body.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::ClusterMap;
use crate::spec::{CommandLine, PodSpec, WriteMode};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(String);

pub struct Renderer {
    hb: handlebars::Handlebars<'static>,
    spec: PodSpec,
}

pub struct Context(serde_json::Value);

pub struct Rendered {
    pub files: Vec<RenderedFile>,
    pub command: CommandLine,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
}

pub struct RenderedFile {
    pub dest: PathBuf,
    pub content: String,
    pub mode: u32,
    pub write: WriteMode,
}

impl Context {
    pub fn new(
        _spec: &PodSpec,
        map: &ClusterMap,
        _previous: Option<&ClusterMap>,
        env: &BTreeMap<String, String>,
    ) -> Result<Context, RenderError> {
        let me = map.me().ok_or_else(|| RenderError("no key".into()))?;
        Ok(Context(
            serde_json::json!({"pod": me, "env": env, "cluster": {"pods": map.pods_by_seq(), "size": map.pods.len(), "generation": map.generation}}),
        ))
    }
}

impl Renderer {
    pub fn new(spec: &PodSpec) -> Result<Renderer, RenderError> {
        let mut hb = handlebars::Handlebars::new();
        hb.set_strict_mode(true);
        hb.register_escape_fn(handlebars::no_escape);
        Ok(Renderer {
            hb,
            spec: spec.clone(),
        })
    }

    pub fn render_str(&self, _name: &str, template: &str, ctx: &Context) -> Result<String, RenderError> {
        self.hb
            .render_template(template, &ctx.0)
            .map_err(|e| RenderError(e.to_string()))
    }

    pub fn render_pod(&self, ctx: &Context) -> Result<Rendered, RenderError> {
        let r = |t: &str| self.render_str("", t, ctx);
        let mut files = Vec::new();
        for t in &self.spec.templates {
            files.push(RenderedFile {
                dest: PathBuf::from(r(&t.dest)?),
                content: r(&t.text)?,
                mode: t.mode,
                write: t.write,
            });
        }
        let command = match &self.spec.process.command {
            CommandLine::Shell(s) => CommandLine::Shell(r(s)?),
            CommandLine::Exec(v) => CommandLine::Exec(v.iter().map(|s| r(s)).collect::<Result<_, _>>()?),
        };
        let env = self
            .spec
            .process
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), r(v)?)))
            .collect::<Result<_, RenderError>>()?;
        let cwd = self.spec.process.cwd.as_deref().map(r).transpose()?;
        Ok(Rendered {
            files,
            command,
            env,
            cwd,
        })
    }
}

pub struct RenderState;

impl RenderState {
    pub fn open(_dir: &Path, _uuid: &str) -> std::io::Result<RenderState> {
        Ok(RenderState)
    }

    pub fn apply(&mut self, rendered: &Rendered) -> Result<bool, RenderError> {
        for f in &rendered.files {
            if let Some(d) = f.dest.parent() {
                std::fs::create_dir_all(d).map_err(|e| RenderError(e.to_string()))?;
            }
            std::fs::write(&f.dest, &f.content).map_err(|e| RenderError(e.to_string()))?;
        }
        Ok(true)
    }
}

pub fn sample_map(_spec: &PodSpec) -> ClusterMap {
    ClusterMap::default()
}
