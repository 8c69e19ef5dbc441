//! Where a pod learns who it is (SPEC §5) and which cluster it is in (§3 overrides), seen where
//! it matters: the pod JSON it registers (§6) and what its templates get (§4), through a real
//! ZooKeeper and a real leader.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::{Member, T};
use crate::harness::pod::{next_ip, read, Pod, PodDir, PodOptions};
use crate::harness::zk::ZkServer;
use crate::harness::{eventually, free_port};

/// Every field of §4's `pod` a platform can set, for this pod and for each pod of the map.
const WHO: &str = "me {{pod.ip}} {{pod.host}} {{pod.public}} {{pod.node}} {{pod.task}} \
    {{pod.control_port}} {{lookup pod.ports \"9000\"}}\n\
    {{#each cluster.pods}}{{ip}} {{host}} {{control_port}} {{port this 9000}}\n{{/each}}";

fn pod_dir(yaml_head: &str, settings: &str) -> PodDir {
    PodDir::new(&format!(
        "{yaml_head}\nports: [9000]\nprocess:\n  command: \"while kill -0 $PPID 2>/dev/null; do sleep 0.2; done\"\n  \
         stop: {{ grace: 2s }}\n{settings}\ntemplates:\n  - source: who.hbs\n    dest: \"{{{{env.OCHOPOD_HOME}}}}/who.txt\"\n"
    ))
    .with_file("who.hbs", WHO)
}

/// Starts a pod of `dir` on `ip`:`port` with `env` on top of the harness's (an empty value
/// unsets: SPEC §5 reads blank variables as unset).
fn start(zk: &ZkServer, dir: PodDir, ip: &str, port: u16, env: &[(&str, String)]) -> Member {
    let mut opts = PodOptions {
        args: Vec::new(),
        ip: Some(ip.to_string()),
        port: Some(port),
        ..PodOptions::default()
    };
    opts.env.insert("OCHOPOD_ZK".into(), zk.connect_string());
    opts.env.insert("OCHOPOD_ZK_SESSION_TIMEOUT".into(), "2s".into());
    // Whatever the machine running the tests says about itself stays out.
    for var in [
        "HOSTNAME",
        "HOST",
        "OCHOPOD_HOST",
        "OCHOPOD_SUBDOMAIN",
        "OCHOPOD_PUBLIC_IP",
    ] {
        opts.env.insert(var.into(), String::new());
    }
    for (k, v) in env {
        opts.env.insert(k.to_string(), v.clone());
    }
    Member {
        pod: Pod::start(&dir, opts),
        _dir: dir,
    }
}

/// A TCP forwarder from `ip:from` to `ip:to`: what a platform's port mapping does.
async fn forward(ip: &str, from: u16, to: u16) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind((ip, from)).await.unwrap();
    let target = (ip.to_string(), to);
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// The pod JSON registered under `key`, by ip.
async fn registered(zk: &ZkServer, key: &str, n: usize) -> BTreeMap<String, Value> {
    let obs = zk.observer().await;
    let dir = format!("/ochopod/clusters/{key}/pods");
    eventually(T, &format!("{n} pods registered under {dir}"), || async {
        let children = obs.list_children(&dir).await.ok()?;
        let mut out = BTreeMap::new();
        for c in children {
            let (data, _) = obs.get_data(&format!("{dir}/{c}")).await.ok()?;
            let pod: Value = serde_json::from_slice(&data).ok()?;
            out.insert(pod["ip"].as_str()?.to_string(), pod);
        }
        (out.len() == n).then_some(out)
    })
    .await
}

/// The pod registered with address `ip`.
fn pod_at<'a>(pods: &'a BTreeMap<String, Value>, ip: &str) -> &'a Value {
    pods.get(ip)
        .unwrap_or_else(|| panic!("no pod registered with ip {ip}: {pods:#?}"))
}

/// The `names` of `pod`, as JSON text; `ports.N` is the port peers reach container port N at.
fn fields(pod: &Value, names: &[&str]) -> Vec<String> {
    let field = |n: &str| match n.strip_prefix("ports.") {
        Some(port) => pod["ports"][port].to_string(),
        None => pod[n].to_string(),
    };
    names.iter().map(|n| field(n)).collect()
}

#[tokio::test]
async fn marathon_and_explicit_variables_make_the_registered_address_and_pod_host() {
    let zk = ZkServer::start();
    let yaml = || {
        pod_dir(
            "cluster: addr\nnamespace: det",
            "settings: { min_size: 2, damper: 200ms }",
        )
    };

    // Marathon (MESOS_TASK_ID alone says so): the address from HOST, container ports remapped by
    // PORT_<n> (the control port's too: peers call through the mapping), the task id;
    // `$HOSTNAME.$OCHOPOD_SUBDOMAIN` as host.
    let m_ip = next_ip();
    let (m_listen, m_mapped) = (free_port(&m_ip), free_port(&m_ip));
    let _m_map = forward(&m_ip, m_mapped, m_listen).await;
    let m = start(
        &zk,
        yaml(),
        &m_ip,
        m_listen,
        &[
            ("OCHOPOD_IP", String::new()),
            ("HOST", m_ip.clone()),
            ("MESOS_TASK_ID", "addr.m-1".into()),
            ("PORT_9000", "31000".into()),
            (&format!("PORT_{m_listen}"), m_mapped.to_string()),
            ("HOSTNAME", "m-host".into()),
            ("OCHOPOD_SUBDOMAIN", "addr.det.svc".into()),
        ],
    );

    // Explicit variables over the platform: OCHOPOD_IP, OCHOPOD_ADVERTISE_PORT over PORT_<n>,
    // OCHOPOD_HOST over the subdomain, OCHOPOD_PUBLIC_IP.
    let x_ip = next_ip();
    let (x_listen, x_advertised) = (free_port(&x_ip), free_port(&x_ip));
    let _x_map = forward(&x_ip, x_advertised, x_listen).await;
    let x = start(
        &zk,
        yaml(),
        &x_ip,
        x_listen,
        &[
            ("MESOS_TASK_ID", "addr.x-2".into()),
            (&format!("PORT_{x_listen}"), free_port(&x_ip).to_string()),
            ("OCHOPOD_ADVERTISE_PORT", x_advertised.to_string()),
            ("HOSTNAME", "x-host".into()),
            ("OCHOPOD_SUBDOMAIN", "addr.det.svc".into()),
            ("OCHOPOD_HOST", "x.example.com".into()),
            ("OCHOPOD_PUBLIC_IP", "203.0.113.7".into()),
        ],
    );

    let pods = registered(&zk, "det.addr", 2).await;
    let m_control = format!("ports.{m_listen}");
    let names = [
        "ip",
        "host",
        "public",
        "node",
        "task",
        "control_port",
        "ports.9000",
        "binding",
    ];
    let m_names: Vec<&str> = names.iter().copied().chain([m_control.as_str()]).collect();
    let want_m = [
        format!("{m_ip:?}"),
        "\"m-host.addr.det.svc\"".into(),
        format!("{m_ip:?}"),
        format!("{m_ip:?}"),
        "\"addr.m-1\"".into(),
        m_mapped.to_string(),
        "31000".into(),
        "\"marathon\"".into(),
        m_mapped.to_string(), // the control port is one of the ports, remapped as the others
    ];
    let want_x = [
        format!("{x_ip:?}"),
        "\"x.example.com\"".into(),
        "\"203.0.113.7\"".into(),
        "\"\"".into(),
        "\"addr.x-2\"".into(),
        x_advertised.to_string(),
        "9000".into(),
        "\"explicit\"".into(),
    ];
    let (m_pod, x_pod) = (pod_at(&pods, &m_ip), pod_at(&pods, &x_ip));
    // Both at once, so that a failure shows every field that differs.
    assert_eq!(
        (fields(m_pod, &m_names), fields(x_pod, &names)),
        (want_m.to_vec(), want_x.to_vec()),
        "(Marathon, explicit): {m_pod} {x_pod}"
    );

    // The leader reached both through their advertised ports, and the templates got the same.
    let who = |m: &Member| read(&m.home_file("who.txt"));
    eventually(T, "both pods configured", || async {
        [&m, &x].iter().all(|p| who(p).lines().count() == 3).then_some(())
    })
    .await;
    let mut rows = [
        format!("{m_ip} m-host.addr.det.svc {m_mapped} 31000"),
        format!("{x_ip} x.example.com {x_advertised} 9000"),
    ];
    let seq_of = |ip: &str| pod_at(&pods, ip)["seq"].as_u64().unwrap();
    rows.sort_by_key(|r| seq_of(r.split(' ').next().unwrap()));
    let cluster = rows.join("\n") + "\n";
    assert_eq!(
        who(&m),
        format!("me {m_ip} m-host.addr.det.svc {m_ip} {m_ip} addr.m-1 {m_mapped} 31000\n{cluster}")
    );
    assert_eq!(
        who(&x),
        format!("me {x_ip} x.example.com 203.0.113.7  addr.x-2 {x_advertised} 9000\n{cluster}")
    );
}

#[tokio::test]
async fn cluster_and_namespace_variables_override_the_pod_yaml() {
    let zk = ZkServer::start();
    let yaml = || {
        pod_dir(
            "cluster: written\nnamespace: written",
            "settings: { damper: 200ms }",
        )
    };
    let key = |m: &Member| read(&m.home_file("key.txt"));
    let with_key = |dir: PodDir| {
        dir.with_file(
            "key.hbs",
            "{{cluster.key}} {{cluster.name}} {{cluster.namespace}} {{pod.ip}}\n",
        )
    };
    let start_key = |env: &[(&str, String)]| {
        let dir = with_key(yaml());
        let text = read(&dir.path()).replace(
            "templates:\n",
            "templates:\n  - source: key.hbs\n    dest: \"{{env.OCHOPOD_HOME}}/key.txt\"\n",
        );
        std::fs::write(dir.path(), text).unwrap();
        let ip = next_ip();
        let port = free_port(&ip);
        start(&zk, dir, &ip, port, env)
    };
    // OCHOPOD_NAMESPACE wins over Kubernetes' POD_NAMESPACE, which wins over the file.
    let a = start_key(&[
        ("OCHOPOD_CLUSTER", "api".into()),
        ("OCHOPOD_NAMESPACE", "mine".into()),
        ("POD_NAMESPACE", "k8s".into()),
    ]);
    let b = start_key(&[("OCHOPOD_CLUSTER", "api".into()), ("POD_NAMESPACE", "k8s".into())]);
    for (m, want) in [(&a, "mine.api api mine"), (&b, "k8s.api api k8s")] {
        let ns_key = want.split(' ').next().unwrap();
        let pods = registered(&zk, ns_key, 1).await;
        let pod = pod_at(&pods, &m.ip);
        assert_eq!(
            (pod["cluster"].as_str(), pod["namespace"].as_str()),
            (want.split(' ').nth(1), want.split(' ').nth(2)),
            "{pod}"
        );
        let rendered = eventually(T, "configured by its own leader", || async {
            let k = key(m);
            (!k.is_empty()).then_some(k)
        })
        .await;
        assert_eq!(rendered, format!("{want} {}\n", m.ip));
    }
    let obs = zk.observer().await;
    let clusters = obs.list_children("/ochopod/clusters").await.unwrap();
    assert!(
        clusters.iter().all(|c| !c.contains("written")),
        "nothing under the file's names: {clusters:?}"
    );
}

/// `ochopod run` without a file argument: `$OCHOPOD_POD` names the pod.yaml (SPEC §2).
/// `OCHOPOD_STATE_DIR` keeps the uuid (and the last renders) out of `$OCHOPOD_HOME`, so that a
/// container started again with another home but the same state volume is the same pod (§5).
#[tokio::test]
async fn ochopod_pod_names_the_file_and_the_state_dir_keeps_the_uuid() {
    let state = tempfile::tempdir().unwrap();
    let run = |dir: &PodDir| {
        let ip = next_ip();
        let port = free_port(&ip);
        let home = dir.home();
        std::fs::create_dir_all(&home).unwrap();
        let child = std::process::Command::new(crate::harness::pod::binary())
            .args(["run", "--standalone"])
            .current_dir(dir.dir.path().join("home"))
            .env("OCHOPOD_POD", dir.path())
            .env("OCHOPOD_STATE_DIR", state.path())
            .env("OCHOPOD_IP", &ip)
            .env("OCHOPOD_BIND", &ip)
            .env("OCHOPOD_PORT", port.to_string())
            .env("OCHOPOD_HOME", &home)
            .env_remove("OCHOPOD_TOKEN")
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Pod {
            child: Some(child),
            ip,
            port,
            home,
            token: None,
            client: reqwest::Client::new(),
        }
    };
    let yaml = "cluster: named-by-env\nprocess:\n  command: [\"sleep\", \"60\"]\n";
    let first_dir = PodDir::new(yaml);
    let first = run(&first_dir);
    let info = first.wait_info("running", T, |i| i["process"] == "running").await;
    assert_eq!(info["cluster"], "named-by-env", "{info}");
    let uuid = info["uuid"].as_str().unwrap().to_string();
    assert_eq!(read(&state.path().join("uuid")).trim(), uuid);
    assert!(
        !first_dir.home().join(".ochopod").exists(),
        "nothing kept in $OCHOPOD_HOME/.ochopod"
    );
    drop(first);
    let again_dir = PodDir::new(yaml);
    let again = run(&again_dir);
    let info = again.wait_info("running", T, |i| i["process"] == "running").await;
    assert_eq!(info["uuid"], uuid.as_str(), "the same pod again: {info}");
}
