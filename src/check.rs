//! `ochopod check` and `ochopod render`: the contract exercised without running anything.
//!
//! `check` loads the pod.yaml (every problem as `file:line:col: message`), then renders every
//! template (files, command, env, cwd, dests, hooks, checks, apply, probe, reload) against a
//! sample cluster of 3 pods, so that a typo fails here rather than in production.

use std::collections::BTreeMap;
use std::path::Path;

use crate::model::ClusterMap;
use crate::render::{self, Context, Renderer};
use crate::spec;

/// The environment templates see: ochopod's secrets are not in it, as at run time.
fn env() -> BTreeMap<String, String> {
    std::env::vars()
        .filter(|(name, _)| !spec::is_secret_env(name))
        .collect()
}

/// `ochopod check POD_YAML`: 0 when clean, 2 with every problem printed.
pub fn check(path: &Path) -> i32 {
    let spec = match spec::load(path) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return 2;
        }
    };
    let problems = render::check(&spec, &env());
    if problems.is_empty() {
        println!(
            "{}: ok ({} template files, every template rendered against a sample cluster of 3 pods)",
            path.display(),
            spec.templates.len()
        );
        return 0;
    }
    for p in problems {
        eprintln!("{p}");
    }
    2
}

/// `ochopod render POD_YAML --cluster FILE.json`: print what that map renders.
pub fn render(path: &Path, cluster: &Path) -> i32 {
    let spec = match spec::load(path) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            return 2;
        }
    };
    let map: ClusterMap = match std::fs::read_to_string(cluster)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{}: not a cluster map: {e}", cluster.display());
            return 2;
        }
    };
    let rendered = Renderer::new(&spec)
        .and_then(|r| Context::new(&spec, &map, None, &env()).and_then(|ctx| r.render_pod(&ctx)));
    match rendered {
        Ok(r) => {
            print!("{r}");
            0
        }
        Err(e) => {
            eprintln!("{e}");
            2
        }
    }
}
