//! Values in shell commands (`{{sh ...}}`) and where rendered files may go (`dest`).

use std::collections::BTreeMap;
use std::process::Command;

use super::*;

/// Renders the hook `pre_start` of `spec()` against `map()` and `env`.
fn render_hook(text: &str, env: &BTreeMap<String, String>) -> Result<String, RenderError> {
    let mut s = spec();
    s.hooks.pre_start = Some(text.into());
    let r = Renderer::new(&s)?;
    let ctx = Context::new(&s, &map(), None, env)?;
    r.render_field(fields::PRE_START, &ctx)
}

fn env_with(name: &str, value: &str) -> BTreeMap<String, String> {
    let mut e = env();
    e.insert(name.into(), value.into());
    e
}

#[test]
fn sh_quote_wraps_in_single_quotes_and_escapes_single_quotes() {
    assert_eq!(helpers::sh_quote("abc").unwrap(), "'abc'");
    assert_eq!(helpers::sh_quote("").unwrap(), "''");
    assert_eq!(helpers::sh_quote("it's").unwrap(), r"'it'\''s'");
    assert_eq!(helpers::sh_quote("'").unwrap(), r"''\'''");
    assert_eq!(
        helpers::sh_quote("$(x) `y` \"z\" \\").unwrap(),
        "'$(x) `y` \"z\" \\'"
    );
    assert_eq!(helpers::sh_quote("a\0b"), None);
}

#[test]
fn sh_quotes_strings_numbers_and_booleans() {
    let env = env_with("V", "a b");
    assert_eq!(render_hook("echo {{sh env.V}}", &env).unwrap(), "echo 'a b'");
    assert_eq!(render_hook("echo {{sh pod.seq}}", &env).unwrap(), "echo '2'");
    assert_eq!(
        render_hook("echo {{sh (port pod 2888)}}", &env).unwrap(),
        "echo '31001'"
    );
    assert_eq!(render_hook("echo {{sh true}}", &env).unwrap(), "echo 'true'");
    assert_eq!(render_hook("echo {{sh \"\"}}", &env).unwrap(), "echo ''");
    // Several values: several words.
    assert_eq!(
        render_hook("echo {{sh pod.ip env.V pod.seq}}", &env).unwrap(),
        "echo '10.0.0.2' 'a b' '2'"
    );
    // Inside #each, on each pod.
    assert_eq!(
        render_hook("nc{{#each cluster.pods}} {{sh ip}}{{/each}}", &env).unwrap(),
        "nc '10.0.0.1' '10.0.0.2' '10.0.0.3'"
    );
}

#[test]
fn sh_refuses_what_is_not_one_value() {
    let env = env_with("NUL", "a\0b");
    let cases = [
        ("{{sh cluster.pods}}", "sh: `cluster.pods` is a list"),
        ("{{sh pod.ports}}", "sh: `pod.ports` is an object"),
        ("{{sh null}}", "sh: parameter 1 is null"),
        ("{{sh pod.nope}}", "sh: `pod.nope` is not in the context"),
        ("{{sh}}", "sh: expected a value to quote"),
        ("{{sh env.NUL}}", "sh: `env.NUL` holds a NUL byte"),
    ];
    for (text, want) in cases {
        let e = render_hook(text, &env).unwrap_err().to_string();
        assert!(
            e.starts_with("pods/zk.yaml: hooks.pre_start:1:1: "),
            "{text}: {e}"
        );
        assert!(e.contains(want), "{text}: {e}");
    }
}

/// Values that run something, or split into several words, when pasted into `sh -c` unquoted
/// or in quotes of either kind.
const HOSTILE: &[&str] = &[
    "a'; touch PWNED; echo '",
    "\"; touch PWNED; echo \"",
    "$(touch PWNED)",
    "`touch PWNED`",
    "x; touch PWNED",
    "x\ntouch PWNED",
    "'\\''",
    "\\",
    "*",
    "-n",
    "  two  spaces  ",
    "${HOME}",
    "",
    "''",
    "é ü 日本",
];

#[test]
fn hostile_values_reach_sh_byte_for_byte_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pwned = dir.path().join("PWNED");
    for value in HOSTILE {
        let value = value.replace("PWNED", &pwned.display().to_string());
        let command = render_hook("printf '%s|' {{sh env.V}}", &env_with("V", &value)).unwrap();
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{command}: {out:?}");
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{value}|"),
            "{command}"
        );
        assert!(!pwned.exists(), "{command} ran something");
    }
}

/// Renders a pod with one template at `dest` (a template), home in `home`, host `host`.
fn render_dest(dest: &str, home: &Path, host: &str) -> Result<Rendered, RenderError> {
    let mut s = spec();
    s.templates = vec![template("templates/peer.cfg.hbs", "peer\n", dest)];
    let mut m = map();
    m.pods.get_mut("zookeeper-2").unwrap().host = host.into();
    let r = Renderer::new(&s)?;
    let env = BTreeMap::from([("OCHOPOD_HOME".to_owned(), home.display().to_string())]);
    let ctx = Context::new(&s, &m, None, &env)?;
    r.render_pod(&ctx)
}

#[test]
fn a_dest_that_climbs_out_with_dotdot_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let dest = "{{env.OCHOPOD_HOME}}/peers/{{pod.host}}.cfg";
    let result = render_dest(dest, &home, "../../escaped");
    // As the supervise loop does: write what rendered.
    let mut state = RenderState::open(&tmp.path().join("state"), "zookeeper-2").unwrap();
    if let Ok(rendered) = &result {
        state.apply(rendered).unwrap();
    }
    assert!(
        !tmp.path().join("escaped.cfg").exists(),
        "written outside the home"
    );
    let e = result.unwrap_err();
    assert!(matches!(e, RenderError::UnsafeDest { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        format!(
            "pods/zk.yaml: templates[0].dest: refused to write templates/peer.cfg.hbs to \
             \"{}/peers/../../escaped.cfg\": it has a `..` component",
            home.display()
        )
    );
    assert!(!home.exists(), "nothing written at all");
}

#[test]
fn a_dest_with_a_control_character_or_empty_is_refused() {
    let home = Path::new("/nonexistent/home");
    for (host, why) in [
        ("a\0b", "control character"),
        ("a\nb", "control character"),
        ("a\tb", "control character"),
    ] {
        let e = render_dest("/tmp/{{pod.host}}.cfg", home, host).unwrap_err();
        assert!(matches!(e, RenderError::UnsafeDest { .. }), "{e}");
        assert!(e.to_string().contains(why), "{e}");
        assert!(
            e.to_string()
                .contains(&format!("{:?}", format!("/tmp/{host}.cfg"))),
            "{e}"
        );
    }
    let e = render_dest("{{pod.node}}", home, "h").unwrap_err();
    assert!(e.to_string().ends_with("it is empty"), "{e}");
}

#[test]
fn dests_without_dotdot_keep_working_relative_to_cwd_or_absolute() {
    let home = Path::new("/srv/zk");
    // `..` inside a name is not a component.
    let out = render_dest("{{env.OCHOPOD_HOME}}/a..b/./{{pod.host}}.cfg", home, "h.x").unwrap();
    assert_eq!(out.files[0].dest, Path::new("/srv/zk/a..b/./h.x.cfg"));
    let mut s = spec();
    s.process.cwd = Some("{{env.OCHOPOD_HOME}}".into());
    s.templates = vec![template("t.hbs", "x", "conf/{{pod.seq}}.cfg")];
    let r = Renderer::new(&s).unwrap();
    let env = BTreeMap::from([("OCHOPOD_HOME".to_owned(), "/srv/zk".to_owned())]);
    let ctx = Context::new(&s, &map(), None, &env).unwrap();
    assert_eq!(
        r.render_pod(&ctx).unwrap().files[0].dest,
        Path::new("/srv/zk/conf/2.cfg")
    );
}

#[test]
fn check_reports_a_dotdot_dest_written_by_the_author() {
    let mut s = spec();
    s.templates = vec![template("t.hbs", "x", "/etc/app/../shadow")];
    let errors: Vec<String> = check(&s, &BTreeMap::new())
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("it has a `..` component"), "{errors:?}");
}

/// Every pod field a value of the map could carry, in every quoting context, runs
/// `echo >PWNED` (a builtin: no PATH needed) if it is pasted into shell text unquoted.
const INJECT: &str = "x';echo>PWNED;'\";echo>PWNED;\"$(echo>PWNED)`echo>PWNED`;echo>PWNED;#";

/// The shipped pod.yaml files quote every value that reaches a shell: each shell field (hooks,
/// checks, string commands, apply, probe, reload) and each rendered `#!/bin/sh` file, rendered
/// against a map whose ips and hosts (and an OCHOPOD_HOME) carry [`INJECT`], is run by
/// `/bin/sh` in an empty folder with an empty PATH (so `nc`, `java`, `sh` are not found and
/// nothing real runs): none of them may create PWNED.
#[test]
fn shipped_pod_yamls_quote_every_value_that_reaches_a_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for entry in std::fs::read_dir(root.join("pods")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let spec =
            crate::spec::load_with_env(&path, &text, &|_: &str| None).unwrap_or_else(|d| panic!("{d}"));
        let mut m = sample_map(&spec);
        let hostile = |p: &mut crate::model::Pod| {
            p.ip = format!("{INJECT}\n{INJECT}");
            p.host = INJECT.into();
            p.public = INJECT.into();
        };
        m.pods.values_mut().for_each(hostile);
        m.removed_pods.values_mut().for_each(hostile);
        m.dependencies
            .values_mut()
            .flat_map(|d| d.values_mut())
            .for_each(hostile);
        let env = sample_env(
            &spec,
            &BTreeMap::from([("OCHOPOD_HOME".to_owned(), INJECT.to_owned())]),
        );
        // Lenient on dependencies' ports, as `check`: the sample cannot know them.
        let (r, errors) = compile(&spec, true);
        assert!(errors.is_empty(), "{errors:?}");
        let ctx = Context::new(&spec, &m, None, &env).unwrap();

        let mut scripts: Vec<(String, Vec<String>)> = Vec::new();
        for (field, _) in inline_fields(&spec) {
            scripts.push((
                field.to_owned(),
                vec!["-c".into(), r.render_field(field, &ctx).unwrap()],
            ));
        }
        for field in [fields::PROCESS, fields::APPLY, fields::PROBE, fields::RELOAD] {
            if let Ok(CommandLine::Shell(s)) = r.render_command(field, &ctx) {
                scripts.push((field.to_owned(), vec!["-c".into(), s]));
            }
        }
        let rendered = r.render_pod(&ctx).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        for (i, f) in rendered.files.iter().enumerate() {
            if f.content.starts_with("#!/bin/sh") {
                let file = tmp.path().join(format!("script-{i}"));
                std::fs::write(&file, &f.content).unwrap();
                scripts.push((f.dest.display().to_string(), vec![file.display().to_string()]));
            }
        }
        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        for (what, args) in &scripts {
            let out = Command::new("/bin/sh")
                .args(args)
                .env_clear()
                .env("PATH", &empty)
                .current_dir(tmp.path())
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            let pwned = tmp.path().join("PWNED");
            assert!(
                !pwned.exists(),
                "{}: {what}: a value ran a command:\n{args:?}\n{}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            ran += 1;
        }
    }
    assert!(ran >= 10, "only {ran} shell fields and scripts ran");
}
