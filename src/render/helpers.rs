//! The template helpers of SPEC §4: `grep`, `port`, `dep` and `sh`.
//!
//! Each helper computes a JSON value (`call_inner`), so it works both as `{{grep ...}}` and as a
//! subexpression (`{{#with (dep "zookeeper")}}`). They read the dependencies from the root of the
//! context, so they answer the same inside `{{#each}}` or `{{#with}}` blocks.
//!
//! Errors are messages only: handlebars adds the template name, line and column, which
//! [`super::RenderError`] turns into `file:line:col: message`.

use handlebars::{
    Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason, ScopedJson,
};
use serde_json::Value;

/// Registers the helpers on `hb`. `lenient_foreign_ports` is for `ochopod check` only: the sample
/// cluster cannot know which ports a dependency serves, so a port missing on a pod of another
/// cluster is taken as is instead of failing. Ports of the pod's own cluster stay strict.
pub(super) fn register(hb: &mut Handlebars<'static>, lenient_foreign_ports: bool) {
    hb.register_helper(
        "grep",
        Box::new(Grep {
            lenient: lenient_foreign_ports,
        }),
    );
    hb.register_helper(
        "port",
        Box::new(Port {
            lenient: lenient_foreign_ports,
        }),
    );
    hb.register_helper("dep", Box::new(Dep));
    hb.register_helper("sh", Box::new(Sh));
}

fn fail(message: String) -> RenderError {
    RenderErrorReason::Other(message).into()
}

/// The `idx`-th parameter of helper `name`, which must be present (and, in strict mode, exist
/// in the context: a missing path is reported by name).
fn param<'a>(h: &'a Helper<'_>, name: &str, idx: usize, what: &str) -> Result<&'a Value, RenderError> {
    let p = h
        .param(idx)
        .ok_or_else(|| fail(format!("{name}: expected {what} as parameter {}", idx + 1)))?;
    if p.is_value_missing() {
        let path = p.relative_path().map(String::as_str).unwrap_or("?");
        return Err(fail(format!("{name}: `{path}` is not in the context")));
    }
    Ok(p.value())
}

/// A port parameter: `2181` or `"2181"`.
fn port_param(h: &Helper<'_>, name: &str, idx: usize) -> Result<u16, RenderError> {
    let v = param(h, name, idx, "a port number")?;
    let port = match v {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.parse::<u16>().ok(),
        _ => None,
    };
    port.ok_or_else(|| fail(format!("{name}: expected a port number, found {v}")))
}

fn name_param<'a>(h: &'a Helper<'_>, name: &str) -> Result<&'a str, RenderError> {
    let v = param(h, name, 0, "a dependency name")?;
    v.as_str()
        .ok_or_else(|| fail(format!("{name}: expected a dependency name, found {v}")))
}

/// `dependencies[name]` from the root of the context, or an error listing the known names.
fn dependency<'rc>(ctx: &'rc Context, helper: &str, name: &str) -> Result<&'rc Value, RenderError> {
    let deps = ctx.data().get("dependencies").and_then(Value::as_object);
    if let Some(dep) = deps.and_then(|d| d.get(name)) {
        return Ok(dep);
    }
    let known: Vec<&str> = deps
        .map(|d| d.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let known = if known.is_empty() {
        "depends_on declares none".to_owned()
    } else {
        format!("known: {}", known.join(", "))
    };
    Err(fail(format!("{helper}: unknown dependency {name:?} ({known})")))
}

/// Whether `pod` belongs to the cluster being rendered: its uuid is among `cluster.pods` or
/// `cluster.removed` at the root of the context.
fn is_own(ctx: &Context, pod: &Value) -> bool {
    let Some(uuid) = pod.get("uuid") else {
        return false;
    };
    let cluster = ctx.data().get("cluster");
    ["pods", "removed"].iter().any(|list| {
        cluster
            .and_then(|c| c.get(list))
            .and_then(Value::as_array)
            .is_some_and(|pods| pods.iter().any(|p| p.get("uuid") == Some(uuid)))
    })
}

/// `pod.ports[port]`: the port peers reach `port` of that pod at (remapped on Marathon).
fn remapped(ctx: &Context, helper: &str, pod: &Value, port: u16, lenient: bool) -> Result<u16, RenderError> {
    let found = pod
        .get("ports")
        .and_then(|p| p.get(port.to_string()))
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok());
    match found {
        Some(p) => Ok(p),
        None if lenient && !is_own(ctx, pod) => Ok(port),
        None => {
            let who = pod
                .get("seq")
                .map(|s| format!("pod seq {s}"))
                .unwrap_or_else(|| format!("{pod}"));
            let cluster = pod.get("cluster").and_then(Value::as_str).unwrap_or("?");
            Err(fail(format!(
                "{helper}: {who} of cluster {cluster} does not serve port {port} (its ports: {})",
                pod.get("ports").map(|p| p.to_string()).unwrap_or_default()
            )))
        }
    }
}

/// `{{grep "zookeeper" 2181}}` → `10.0.0.1:2181,10.0.0.2:2181`: the dependency's pods, in the
/// order of the context (by seq), as `ip:remapped-port`.
struct Grep {
    lenient: bool,
}

impl HelperDef for Grep {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let name = name_param(h, "grep")?;
        let port = port_param(h, "grep", 1)?;
        let dep = dependency(ctx, "grep", name)?;
        let pods = dep.get("pods").and_then(Value::as_array);
        let mut out = Vec::new();
        for pod in pods.into_iter().flatten() {
            let ip = pod.get("ip").and_then(Value::as_str).unwrap_or_default();
            let p = remapped(ctx, "grep", pod, port, self.lenient)?;
            out.push(format!("{ip}:{p}"));
        }
        Ok(ScopedJson::Derived(Value::String(out.join(","))))
    }
}

/// `{{port this 2888}}` → the port peers reach 2888 of the given pod at.
struct Port {
    lenient: bool,
}

impl HelperDef for Port {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let pod = param(h, "port", 0, "a pod")?;
        if !pod.is_object() {
            return Err(fail(format!("port: expected a pod, found {pod}")));
        }
        let port = port_param(h, "port", 1)?;
        let p = remapped(ctx, "port", pod, port, self.lenient)?;
        Ok(ScopedJson::Derived(Value::from(p)))
    }
}

/// `(dep "zookeeper")` → `{ size, pods: [...] }`, for `{{#with}}` and `{{#each}}`.
struct Dep;

impl HelperDef for Dep {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let name = name_param(h, "dep")?;
        let dep = dependency(ctx, "dep", name)?;
        Ok(ScopedJson::Derived(dep.clone()))
    }
}

/// `value` as one word for POSIX `sh`: in single quotes, inside which the shell interprets
/// nothing, with each `'` written as `'\''` (close, an escaped quote, reopen). `''` for the empty
/// string. `None` when `value` holds a NUL: no shell word (no argv entry) can carry one.
pub(crate) fn sh_quote(value: &str) -> Option<String> {
    if value.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(value.len().saturating_add(2));
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Some(out)
}

/// `{{sh pod.ip}}` → `'10.0.0.1'`: a value quoted for `sh` (see [`sh_quote`]), so that a value
/// that reaches `sh -c` (hooks, checks, string commands, apply, probe, reload) is one word and
/// nothing in it runs. Strings, numbers (their decimal text) and booleans; several parameters
/// give several words, separated by spaces. Objects, arrays and null are refused: there is no
/// one right way to spell them as words.
struct Sh;

impl HelperDef for Sh {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        if h.params().is_empty() {
            return Err(fail(
                "sh: expected a value to quote, as in {{sh pod.ip}}".to_owned(),
            ));
        }
        let mut words = Vec::with_capacity(h.params().len());
        for idx in 0..h.params().len() {
            let v = param(h, "sh", idx, "a value")?;
            let what = || {
                h.param(idx)
                    .and_then(|p| p.relative_path())
                    .map_or_else(|| format!("parameter {}", idx + 1), |p| format!("`{p}`"))
            };
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => return Err(fail(format!("sh: {} is null: nothing to quote", what()))),
                Value::Array(_) | Value::Object(_) => {
                    let kind = if v.is_array() { "a list" } else { "an object" };
                    return Err(fail(format!(
                        "sh: {} is {kind}; quote one value at a time (e.g. {{{{sh ip}}}} inside {{{{#each}}}})",
                        what()
                    )));
                }
            };
            let word = sh_quote(&text).ok_or_else(|| {
                fail(format!(
                    "sh: {} holds a NUL byte, which no shell word can carry",
                    what()
                ))
            })?;
            words.push(word);
        }
        Ok(ScopedJson::Derived(Value::String(words.join(" "))))
    }
}
