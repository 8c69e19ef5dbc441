//! Rendering: the context, the helpers, strict mode, errors and `check`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::*;

#[test]
fn html_escaping_is_off() {
    let mut env = env();
    env.insert("X".into(), "<&>\"'".into());
    let mut s = spec();
    s.templates = vec![template("t.hbs", "a={{env.X}} b={{{env.X}}}", "/tmp/t")];
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env).unwrap();
    assert_eq!(r.render_pod(&ctx).unwrap().files[0].content, "a=<&>\"' b=<&>\"'");
}

#[test]
fn missing_variable_is_an_error_naming_file_line_and_column() {
    let mut s = spec();
    let e = render_one(&mut s, &map(), "ok\nport={{pod.nope}}\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "templates/t.hbs:2:6: `pod.nope` is not in the context (strict mode)"
    );
}

#[test]
fn missing_variable_in_an_inline_template_names_the_pod_yaml_field() {
    let mut s = spec();
    s.process.env.insert("JVMFLAGS".into(), "-Dx={{pod.typo}}".into());
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let e = r.render_pod(&ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pods/zk.yaml: process.env.JVMFLAGS:1:5: `pod.typo` is not in the context (strict mode)"
    );
}

#[test]
fn syntax_error_names_file_line_and_column() {
    let mut s = spec();
    s.templates = vec![template("templates/zoo.cfg.hbs", "a\nb {{#each x}}\n", "/tmp/t")];
    let e = Renderer::new(&s).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("templates/zoo.cfg.hbs:"), "{msg}");
    match e {
        RenderError::Template { line, .. } => assert!(line.is_some(), "{msg}"),
        other => panic!("{other}"),
    }
}

#[test]
fn if_on_a_missing_value_is_silently_false_even_in_strict_mode() {
    // Documented gap of handlebars' strict mode (see the module doc).
    let mut s = spec();
    assert_eq!(
        render_one(&mut s, &map(), "{{#if pod.typo}}yes{{else}}no{{/if}}").unwrap(),
        "no"
    );
}

#[test]
fn context_has_the_shape_of_spec_section_4() {
    let mut s = spec();
    s.depends_on = vec![Dependency {
        cluster: "kafka".into(),
        min: 1,
    }];
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let v = ctx.as_json();
    assert_eq!(v["pod"]["uuid"], "zookeeper-2");
    assert_eq!(v["pod"]["seq"], 2);
    assert_eq!(v["pod"]["index"], 1);
    assert_eq!(
        v["pod"]["ports"],
        json!({"2181": 2181, "2888": 31001, "3888": 3888})
    );
    assert_eq!(v["pod"]["control_port"], 8080);
    for k in ["ip", "host", "public", "node", "task"] {
        assert!(v["pod"][k].is_string(), "pod.{k}");
    }
    let c = &v["cluster"];
    assert_eq!(c["name"], "zookeeper");
    assert_eq!(c["namespace"], "default");
    assert_eq!(c["key"], "default.zookeeper");
    assert_eq!(c["size"], 3);
    assert_eq!(c["generation"], 7);
    let seqs: Vec<_> = c["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["seq"].clone())
        .collect();
    assert_eq!(seqs, vec![json!(1), json!(2), json!(3)]);
    let idx: Vec<_> = c["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["index"].clone())
        .collect();
    assert_eq!(idx, vec![json!(0), json!(1), json!(2)]);
    assert_eq!(c["added"][0]["seq"], 3);
    assert_eq!(c["added"][0]["index"], 2);
    assert_eq!(c["removed"], json!([]));
    assert_eq!(v["dependencies"], json!({"kafka": {"size": 0, "pods": []}}));
    assert_eq!(v["env"], json!({"OCHOPOD_HOME": "/home/zk"}));
}

#[test]
fn context_needs_the_receiver_in_the_map() {
    let mut m = map();
    m.key = "someone-else".into();
    let e = Context::new(&spec(), &m, None, &env()).unwrap_err();
    assert!(matches!(e, RenderError::NotInMap { .. }), "{e}");
}

#[test]
fn removed_pods_come_from_the_map_then_from_the_previous_map() {
    let previous = {
        let mut m = map();
        m.pods
            .insert("zookeeper-5".into(), pod("zookeeper", 5, "10.0.0.5", &[]));
        m
    };
    let mut m = map();
    m.removed = vec!["zookeeper-5".into(), "zookeeper-4".into(), "unknown".into()];
    m.removed_pods = by_uuid(vec![pod("zookeeper", 4, "10.0.0.4", &[])]);
    let ctx = Context::new(&spec(), &m, Some(&previous), &env()).unwrap();
    let removed = ctx.as_json()["cluster"]["removed"].as_array().unwrap().clone();
    let ips: Vec<_> = removed.iter().map(|p| p["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, vec!["10.0.0.4", "10.0.0.5"]);
    assert!(removed[0].get("index").is_none());

    let mut s = spec();
    let out = render_one(&mut s, &m, "{{#each cluster.removed}}-{{seq}}{{/each}}");
    assert_eq!(out.unwrap(), "-4");
    // render_one builds its own context without `previous`: only the map's removed pods.
    s.templates = vec![template(
        "t.hbs",
        "{{#each cluster.removed}}-{{seq}}{{/each}}",
        "/tmp/t",
    )];
    let r = Renderer::new(&s).unwrap();
    assert_eq!(r.render_pod(&ctx).unwrap().files[0].content, "-4-5");
}

fn kafka_map() -> ClusterMap {
    let mut m = map();
    m.dependencies.insert(
        "zookeeper".into(),
        by_uuid(vec![
            pod("zookeeper", 2, "10.0.1.2", &[(2181, 31181)]),
            pod("zookeeper", 1, "10.0.1.1", &[(2181, 2181)]),
        ]),
    );
    m
}

#[test]
fn grep_lists_a_dependency_as_ip_and_remapped_port_by_seq() {
    let mut s = spec();
    let out = render_one(&mut s, &kafka_map(), "zk={{grep \"zookeeper\" 2181}}").unwrap();
    assert_eq!(out, "zk=10.0.1.1:2181,10.0.1.2:31181");
}

#[test]
fn grep_on_an_unknown_dependency_or_port_is_an_error() {
    let mut s = spec();
    let e = render_one(&mut s, &kafka_map(), "{{grep \"zk\" 2181}}").unwrap_err();
    assert_eq!(
        e.to_string(),
        "templates/t.hbs:1:1: grep: unknown dependency \"zk\" (known: zookeeper)"
    );
    let e = render_one(&mut s, &kafka_map(), "{{grep \"zookeeper\" 2182}}").unwrap_err();
    assert!(e.to_string().contains("does not serve port 2182"), "{e}");
}

#[test]
fn port_gives_a_pods_remapped_port() {
    let mut s = spec();
    let t = "{{#each cluster.pods}}server.{{seq}}={{ip}}:{{port this 2888}}:{{port this 3888}}\n{{/each}}";
    assert_eq!(
        render_one(&mut s, &map(), t).unwrap(),
        "server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:31001:3888\nserver.3=10.0.0.3:2888:3888\n"
    );
    assert_eq!(render_one(&mut s, &map(), "{{port pod 2888}}").unwrap(), "31001");
    let e = render_one(&mut s, &map(), "\n  {{port pod 9999}}").unwrap_err();
    assert!(
        e.to_string().starts_with("templates/t.hbs:2:3: port: pod seq 2"),
        "{e}"
    );
    let e = render_one(&mut s, &map(), "{{port pod.nope 2888}}").unwrap_err();
    assert!(e.to_string().contains("pod.nope"), "{e}");
}

#[test]
fn dep_gives_the_dependency_object() {
    let mut s = spec();
    let t =
        "{{#with (dep \"zookeeper\")}}{{size}}:{{#each pods}}{{ip}}:{{port this 2181}};{{/each}}{{/with}}";
    assert_eq!(
        render_one(&mut s, &kafka_map(), t).unwrap(),
        "2:10.0.1.1:2181;10.0.1.2:31181;"
    );
    let e = render_one(&mut s, &kafka_map(), "{{#with (dep \"nope\")}}{{/with}}").unwrap_err();
    assert!(e.to_string().contains("unknown dependency \"nope\""), "{e}");
}

#[test]
fn render_pod_renders_command_env_cwd_and_relative_dests() {
    let mut s = spec();
    s.process.command = CommandLine::Shell("exec zk --id {{pod.seq}}".into());
    s.process.env.insert("MYID".into(), "{{pod.seq}}".into());
    s.process.cwd = Some("{{env.OCHOPOD_HOME}}".into());
    s.templates = vec![template("t.hbs", "{{cluster.size}}", "conf/{{pod.seq}}.cfg")];
    s.hooks.pre_start = Some("echo {{pod.ip}}".into());
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(out.command, CommandLine::Shell("exec zk --id 2".into()));
    assert_eq!(out.env["MYID"], "2");
    assert_eq!(out.cwd.as_deref(), Some("/home/zk"));
    assert_eq!(out.files[0].dest, PathBuf::from("/home/zk/conf/2.cfg"));
    assert_eq!(r.render_field(fields::PRE_START, &ctx).unwrap(), "echo 10.0.0.2");
    assert_eq!(
        r.render_command(fields::PRE_START, &ctx).unwrap(),
        CommandLine::Shell("echo 10.0.0.2".into())
    );
    assert!(matches!(
        r.render_field(fields::TEAR_DOWN, &ctx),
        Err(RenderError::UnknownField { .. })
    ));
    assert_eq!(
        r.render_command(fields::PROCESS, &ctx).unwrap(),
        CommandLine::Shell("exec zk --id 2".into())
    );
}

/// Hooks and checks render from their compiled templates, and a render error names the
/// pod.yaml field (checks were rendered from their text under `checks.ready`, a name that was not
/// a field, so their errors read as if from a file called `checks.ready`).
#[test]
fn hook_and_check_render_errors_name_their_pod_yaml_field() {
    let mut s = spec();
    s.hooks.pre_start = Some("echo {{pod.nope}}".into());
    s.checks.ready = Some(crate::spec::Check {
        command: "test {{nope}}".into(),
        every: std::time::Duration::from_secs(1),
        timeout: std::time::Duration::from_secs(1),
        failures: 1,
    });
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let e = r.render_command(fields::PRE_START, &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pods/zk.yaml: hooks.pre_start:1:6: `pod.nope` is not in the context (strict mode)"
    );
    let e = r.render_command(fields::READY, &ctx).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pods/zk.yaml: checks.ready.command:1:6: `nope` is not in the context (strict mode)"
    );
}

#[test]
fn two_templates_on_one_dest_are_an_error() {
    let mut s = spec();
    s.templates = vec![template("a.hbs", "a", "/tmp/x"), template("b.hbs", "b", "/tmp/x")];
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &map(), None, &env()).unwrap();
    let e = r.render_pod(&ctx).unwrap_err();
    assert_eq!(e.to_string(), "b.hbs: renders to /tmp/x, as a.hbs does");
}

const ZOO_CFG: &str = "tickTime=2000
dataDir={{env.OCHOPOD_HOME}}/data
clientPort={{port pod 2181}}
{{#each cluster.pods}}
server.{{seq}}={{ip}}:{{port this 2888}}:{{port this 3888}}
{{/each}}
";

#[test]
fn sample_map_renders_a_zoo_cfg() {
    let mut s = spec();
    s.templates = vec![template(
        "templates/zoo.cfg.hbs",
        ZOO_CFG,
        "{{env.OCHOPOD_HOME}}/zoo.cfg",
    )];
    let m = sample_map(&s);
    assert_eq!(m.pods.len(), 3);
    let r = Renderer::new(&s).unwrap();
    let ctx = Context::new(&s, &m, None, &env()).unwrap();
    let out = r.render_pod(&ctx).unwrap();
    assert_eq!(
        out.files[0].content,
        "tickTime=2000\ndataDir=/home/zk/data\nclientPort=2181\n\
         server.1=10.0.0.1:2888:3888\nserver.2=10.0.0.2:2888:3888\nserver.3=10.0.0.3:2888:3888\n"
    );
    assert_eq!(ctx.as_json()["pod"]["seq"], 1);
    assert_eq!(ctx.as_json()["cluster"]["removed"][0]["seq"], 4);
    assert!(check(&s, &BTreeMap::new()).is_empty());
}

#[test]
fn check_lists_every_problem_and_tolerates_unknown_dependency_ports() {
    let mut s = spec();
    s.depends_on = vec![
        Dependency {
            cluster: "zookeeper".into(),
            min: 3,
        },
        Dependency {
            cluster: "/infra.kafka-*".into(),
            min: 1,
        },
    ];
    s.templates = vec![
        template(
            "ok.hbs",
            "{{grep \"zookeeper\" 2181}} {{env.UNSET_HERE}}",
            "/tmp/ok",
        ),
        template("bad.hbs", "{{#if}}", "/tmp/bad"),
        template("typo.hbs", "x\n{{cluster.sise}}", "/tmp/typo"),
    ];
    s.hooks.configured = Some("echo {{port pod 9999}}".into());
    s.checks.ready = Some(Check {
        command: "nc {{pod.ip}} {{port pod 2181}}".into(),
        every: Duration::from_secs(1),
        timeout: Duration::from_secs(60),
        failures: 1,
    });
    let errors: Vec<String> = check(&s, &BTreeMap::new())
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].starts_with("bad.hbs:1:"), "{errors:#?}");
    assert_eq!(
        errors[1],
        "typo.hbs:2:1: `cluster.sise` is not in the context (strict mode)"
    );
    assert!(
        errors[2].starts_with("pods/zk.yaml: hooks.configured:1:6: port:"),
        "{errors:#?}"
    );

    let m = sample_map(&s);
    assert!(m.dependencies.contains_key("zookeeper"));
    assert!(m.dependencies.contains_key("infra.kafka-sample"));
    assert_eq!(m.dependencies["zookeeper"].len(), 3);
}

#[test]
fn ports_are_reachable_by_path_and_lookup() {
    let mut s = spec();
    let t = "{{pod.ports.[2888]}} {{lookup pod.ports \"2888\"}} \
             {{#each cluster.pods}}{{@index}}{{@root.pod.seq}}{{#unless @last}},{{/unless}}{{/each}}";
    assert_eq!(render_one(&mut s, &map(), t).unwrap(), "31001 31001 02,12,22");
}

/// Every template and pod.yaml field is registered under a name, so a partial could include
/// another and recurse: two hooks including each other, or an inline partial including itself,
/// overflowed the stack and aborted `ochopod check` (and PID 1 at the hook's first run) instead
/// of reporting. Partials and decorators are refused where they are written.
#[test]
fn partials_are_refused_at_their_position_rather_than_recursing() {
    let mut s = spec();
    s.hooks.pre_start = Some("{{> hooks.configured}}".into());
    s.hooks.configured = Some("echo\n  {{> hooks.pre_start}}".into());
    s.hooks.initialize = Some("{{#*inline \"a\"}}{{> a}}{{/inline}}{{> a}}".into());
    s.templates = vec![template(
        "t.hbs",
        "x\n{{#each cluster.pods}}\n {{#> layout}}{{/layout}}{{/each}}",
        "/tmp/t",
    )];
    let errors: Vec<String> = check(&s, &BTreeMap::new())
        .iter()
        .map(|e| e.to_string())
        .collect();
    let expected = [
        "t.hbs:3:2: ",
        "pods/zk.yaml: hooks.initialize:1:1: ",
        "pods/zk.yaml: hooks.pre_start:1:1: ",
        "pods/zk.yaml: hooks.configured:2:3: ",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (e, at) in errors.iter().zip(expected) {
        assert!(
            e.starts_with(at) && e.contains("partials"),
            "{e} (expected at {at})"
        );
    }
    assert!(Renderer::new(&s).is_err());
}
