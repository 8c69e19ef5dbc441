//! `ochopod check` and `ochopod render`: the contract exercised without running anything.
//!
//! `check` loads the pod.yaml (every problem as `file:line:col: message`), then renders every
//! template (files, command, env, cwd, dests, hooks, checks, apply, probe, reload) against a
//! sample cluster of 3 pods, so that a typo fails here rather than in production.

use std::path::Path;

use crate::model::ClusterMap;
use crate::render::{self, Context, Renderer};
use crate::spec::{self, CommandLine, PodSpec, ReloadAction};

/// Every inline command template of the spec, with the pod.yaml field it comes from.
pub fn command_templates(spec: &PodSpec) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut line = |name: &str, l: &CommandLine| match l {
        CommandLine::Shell(s) => out.push((name.to_string(), s.clone())),
        CommandLine::Exec(v) => out.extend(
            v.iter()
                .enumerate()
                .map(|(i, s)| (format!("{name}[{i}]"), s.clone())),
        ),
    };
    if let Some(apply) = &spec.settings.apply {
        line("settings.apply.command", apply);
    }
    if let Some(probe) = &spec.settings.probe {
        line("settings.probe.command", &probe.command);
    }
    if let Some(reload) = &spec.process.reload {
        if let ReloadAction::Command(c) = &reload.action {
            line("process.reload.command", c);
        }
    }
    let h = &spec.hooks;
    for (name, hook) in [
        ("hooks.initialize", &h.initialize),
        ("hooks.pre_start", &h.pre_start),
        ("hooks.can_configure", &h.can_configure),
        ("hooks.configured", &h.configured),
        ("hooks.signaled", &h.signaled),
        ("hooks.tear_down", &h.tear_down),
        ("hooks.finalize", &h.finalize),
    ] {
        if let Some(hook) = hook {
            out.push((name.to_string(), hook.clone()));
        }
    }
    for (name, check) in [
        ("checks.ready.command", &spec.checks.ready),
        ("checks.sanity.command", &spec.checks.sanity),
    ] {
        if let Some(check) = check {
            out.push((name.to_string(), check.command.clone()));
        }
    }
    out
}

fn env() -> std::collections::BTreeMap<String, String> {
    std::env::vars().collect()
}

/// Renders everything against `map`; every problem as a line.
pub fn render_all(spec: &PodSpec, map: &ClusterMap) -> Result<render::Rendered, Vec<String>> {
    let renderer = Renderer::new(spec).map_err(|e| vec![e.to_string()])?;
    let ctx = Context::new(spec, map, None, &env()).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let rendered = renderer
        .render_pod(&ctx)
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    for (name, template) in command_templates(spec) {
        if let Err(e) = renderer.render_str(&name, &template, &ctx) {
            problems.push(e.to_string());
        }
    }
    match rendered {
        Some(r) if problems.is_empty() => Ok(r),
        _ => Err(problems),
    }
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
    match render_all(&spec, &render::sample_map(&spec)) {
        Ok(_) => {
            println!(
                "{}: ok ({} templates rendered against a sample cluster of 3 pods)",
                path.display(),
                spec.templates.len()
            );
            0
        }
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            2
        }
    }
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
    match render_all(&spec, &map) {
        Ok(r) => {
            for f in &r.files {
                println!("==> {} (mode {:o}) <==", f.dest.display(), f.mode);
                print!("{}", f.content);
                if !f.content.ends_with('\n') {
                    println!();
                }
            }
            println!("==> process <==");
            match &r.command {
                CommandLine::Exec(v) => println!("command: {}", serde_json::to_string(v).unwrap_or_default()),
                CommandLine::Shell(s) => println!("command: /bin/sh -c {s:?}"),
            }
            for (k, v) in &r.env {
                println!("env: {k}={v}");
            }
            if let Some(cwd) = &r.cwd {
                println!("cwd: {cwd}");
            }
            0
        }
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            2
        }
    }
}
