//! The snapshot against a real ZooKeeper with its default `jute.maxbuffer` (1 MB): a cluster of
//! 5,000 pods commits and reads back (in parts), a small one stays one znode in the old format.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ochopod::model::Pod;
use ochopod::zk::paths::ClusterPaths;
use ochopod::zk::snapshot::{parts, Commit, Snapshot, SnapshotError};
use ochopod::zk::{election, register, snapshot, Acls, ZkError};
use zookeeper_client as zkc;

use crate::harness::zk::ZkServer;
use crate::sync_zk::{pod, spec, zk_config};

/// A session that survives the pauses of a loaded machine moving megabytes: sync_zk's 2 s
/// sessions give up on a reply after 800 ms.
async fn client(zk: &ZkServer) -> zkc::Client {
    let cfg = ochopod::zk::ZkConfig {
        session_timeout: std::time::Duration::from_secs(15),
        ..zk_config(zk)
    };
    ochopod::zk::connect(&cfg).await.expect("connect")
}

/// `n` valid pods of `key`'s cluster, about 450 bytes of JSON each.
fn pods(n: usize, salt: &str) -> BTreeMap<String, Pod> {
    let s = spec("cluster: big\nnamespace: t\nprocess: { command: 'true' }\n");
    (0..n)
        .map(|i| {
            let uuid = format!("{salt}-0000-4000-8000-{i:012}");
            let mut p = pod(&s, &uuid, u32::try_from(i + 1).unwrap());
            p.ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
            p.host = format!("web-{i}.web.t.svc.cluster.local");
            p.node = format!("node-{}", i % 97);
            p.task = format!("task-{salt}-{i}");
            p.ports = BTreeMap::from([("8080".into(), 8080), ("9090".into(), 9090)]);
            (uuid, p)
        })
        .collect()
}

fn snap(generation: u64, pods: BTreeMap<String, Pod>) -> Snapshot {
    Snapshot {
        generation,
        hash: format!("h{generation}"),
        pods,
        depends_on: vec!["t.db".into()],
        ..Snapshot::default()
    }
}

/// A leader of `t.big` and the commit it would make.
struct Leader {
    client: zookeeper_client::Client,
    node: String,
    paths: ClusterPaths,
    acls: Acls,
}

impl Leader {
    async fn start(zk: &ZkServer) -> Leader {
        let paths = ClusterPaths::new("t.big");
        let acls = Acls::new(&zk_config(zk));
        let client = client(zk).await;
        register::ensure_layout(&client, &paths, acls).await.unwrap();
        let me = election::enter(&client, &paths, acls, "l").await.unwrap();
        election::wait_until_leader(&client, &paths, &me).await.unwrap();
        Leader {
            client,
            node: me.path,
            paths,
            acls,
        }
    }

    async fn commit(&self, s: &Snapshot) -> Result<(), ochopod::zk::ZkError> {
        let path = self.paths.snapshot();
        // The version as stored (the leader gets it from snapshot::read).
        let version = self.client.check_stat(&path).await.unwrap().map(|s| s.version);
        let c = Commit {
            leader_node: &self.node,
            leader_version: 0,
            path: &path,
            snapshot: s,
            snapshot_version: version,
            free_seqs: Vec::new(),
        };
        snapshot::commit(&self.client, self.acls, &c).await
    }

    /// The `snapshot` znode as stored.
    async fn raw(&self) -> serde_json::Value {
        let (data, _) = self.client.get_data(&self.paths.snapshot()).await.unwrap();
        serde_json::from_slice(&data).unwrap()
    }

    /// The names under `snapshot-parts`, sorted (none when it does not exist).
    async fn part_names(&self) -> Vec<String> {
        match self
            .client
            .list_children(&parts::dir(&self.paths.snapshot()))
            .await
        {
            Ok(mut names) => {
                names.sort();
                names
            }
            Err(zkc::Error::NoNode) => Vec::new(),
            Err(e) => panic!("{e}"),
        }
    }

    async fn read(&self) -> Snapshot {
        snapshot::read(&self.client, &self.paths.snapshot())
            .await
            .unwrap()
            .unwrap()
            .0
    }
}

#[tokio::test]
async fn a_snapshot_of_5000_pods_commits_under_the_default_jute_maxbuffer_and_reads_back_equal() {
    let zk = ZkServer::start();
    let l = Leader::start(&zk).await;
    let mut big = snap(1, pods(5000, "aaaaaaaa"));
    let kept = snapshot::Reservation {
        uuid: "gone-0000".into(),
        until: 4_000_000_000_000,
    };
    big.reserved.insert(5001, kept);
    let bytes = serde_json::to_vec(&big).unwrap().len();
    assert!(bytes > 1536 * 1024, "{bytes} bytes: well over ZooKeeper's 1 MB");
    l.commit(&big).await.unwrap();
    assert_eq!(l.read().await, big);
    // `snapshot` holds a manifest; what only needs the generation reads nothing else.
    let manifest = l.raw().await;
    let names: Vec<String> = serde_json::from_value(manifest["parts"].clone()).unwrap();
    assert_eq!(names.len(), bytes.div_ceil(parts::PART_BYTES), "{manifest}");
    assert_eq!(manifest["generation"], 1);
    assert_eq!(manifest["depends_on"], serde_json::json!(["t.db"]));
    assert_eq!(manifest["bytes"], bytes);
    assert_eq!(l.part_names().await, names);
    // The other readers: a dependent (its generation and pods), and decode() refusing a manifest
    // rather than reading it as a snapshot without pods.
    let (generation, _) = ochopod::zk::cluster::dependency_pods(&l.client, "t.big")
        .await
        .unwrap();
    assert_eq!(generation, 1);
    let (data, _) = l.client.get_data(&l.paths.snapshot()).await.unwrap();
    let e = snapshot::decode(&l.paths.snapshot(), &data).unwrap_err();
    assert!(
        matches!(
            e,
            ZkError::Snapshot {
                source: SnapshotError::InParts,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        snapshot::resolve(&l.client, &l.paths.snapshot(), &data)
            .await
            .unwrap(),
        big
    );
    // ctl reads it whole too: the reservation is only in the parts.
    let ls = crate::ctl::ctl_with(&zk.connect_string(), &["ls", "--json", "t.big"], &[]).await;
    let ls: serde_json::Value = serde_json::from_str(&ls.stdout).expect(&ls.stderr);
    let cluster = &ls["clusters"][0];
    assert_eq!(cluster["generation"], 1, "{ls}");
    assert_eq!(cluster["reserved"][0]["uuid"], "gone-0000", "{ls}");

    // The next big one replaces the parts; the old ones are deleted.
    let next = snap(2, pods(4000, "bbbbbbbb"));
    l.commit(&next).await.unwrap();
    assert_eq!(l.read().await, next);
    let names: Vec<String> = serde_json::from_value(l.raw().await["parts"].clone()).unwrap();
    assert_eq!(l.part_names().await, names);
    // Back under the limit: one znode again, the parts gone.
    let small = snap(3, pods(10, "cccccccc"));
    l.commit(&small).await.unwrap();
    assert_eq!(l.raw().await["generation"], 3);
    assert!(l.raw().await.get("parts").is_none());
    assert_eq!(l.part_names().await, Vec::<String>::new());
    assert_eq!(l.read().await, small);
}

#[tokio::test]
async fn a_small_snapshot_stays_one_znode_in_the_format_of_older_versions() {
    let zk = ZkServer::start();
    let l = Leader::start(&zk).await;
    let small = snap(1, pods(50, "dddddddd"));
    l.commit(&small).await.unwrap();
    let (data, _) = l.client.get_data(&l.paths.snapshot()).await.unwrap();
    // What an older ochopod (or another tool) reads: the snapshot itself, pods included.
    assert_eq!(snapshot::decode(&l.paths.snapshot(), &data).unwrap(), small);
    assert_eq!(l.raw().await["pods"].as_object().unwrap().len(), 50);
    assert!(
        matches!(
            l.client.check_stat(&parts::dir(&l.paths.snapshot())).await,
            Ok(None)
        ),
        "no parts node for a small cluster"
    );
}

#[tokio::test]
async fn a_reader_racing_commits_reads_again_when_a_part_vanished_never_a_wrong_snapshot() {
    let zk = ZkServer::start();
    let l = Leader::start(&zk).await;
    let path = l.paths.snapshot();
    let a = snap(1, pods(2000, "aaaaaaaa"));
    let b = snap(2, pods(2000, "bbbbbbbb"));
    l.commit(&a).await.unwrap();
    // Deterministic: the reader has a's manifest, then b replaces a's parts.
    let (old, _) = l.client.get_data(&path).await.unwrap();
    l.commit(&b).await.unwrap();
    let reader = client(&zk).await;
    assert_eq!(snapshot::resolve(&reader, &path, &old).await.unwrap(), b);

    // And at random: commits alternate while a reader reads; every read is a or b, whole.
    let writer = async {
        for i in 0..8 {
            let s = if i % 2 == 0 { &a } else { &b };
            l.commit(s).await.unwrap();
        }
    };
    let read = async {
        let (mut reads, mut errors) = (0, 0);
        for _ in 0..20 {
            match snapshot::read(&reader, &path).await {
                Ok(Some((s, _))) => {
                    assert!(
                        s == a || s == b,
                        "a snapshot neither committed: generation {}",
                        s.generation
                    );
                    reads += 1;
                }
                // Parts replaced 5 times in a row under it: an error, retried by the caller.
                Err(ZkError::Snapshot {
                    source: SnapshotError::Vanishing,
                    ..
                }) => errors += 1,
                other => panic!("{other:?}"),
            }
        }
        (reads, errors)
    };
    let ((), (reads, errors)) = tokio::join!(writer, read);
    assert!(reads > 0, "{errors} errors");
}

/// Writes `manifest` into `snapshot` and the given parts, as someone with write access could.
async fn plant(l: &Leader, manifest: &serde_json::Value, parts_data: &[(&str, &[u8])]) {
    let path = l.paths.snapshot();
    let dir = parts::dir(&path);
    let _ = l.client.create(&dir, &[], &l.acls.persistent()).await;
    for (name, data) in parts_data {
        let part = format!("{dir}/{name}");
        let _ = l.client.delete(&part, None).await;
        l.client.create(&part, data, &l.acls.persistent()).await.unwrap();
    }
    let data = serde_json::to_vec(manifest).unwrap();
    match l.client.set_data(&path, &data, None).await {
        Ok(_) => {}
        Err(zkc::Error::NoNode) => {
            l.client.create(&path, &data, &l.acls.persistent()).await.unwrap();
        }
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn hostile_manifests_are_errors_not_panics_nor_huge_allocations() {
    use sha2::Digest as _;
    let zk = ZkServer::start();
    let l = Leader::start(&zk).await;
    let json = serde_json::to_vec(&snap(7, pods(20, "eeeeeeee"))).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&json));
    let name = format!("{sha}-0");
    let good = serde_json::json!({
        "generation": 7, "hash": "h7", "depends_on": ["t.db"], "bytes": json.len(),
        "sha256": sha, "parts": [name],
    });
    plant(&l, &good, &[(&name, &json)]).await;
    assert_eq!(
        l.read().await.generation,
        7,
        "the planted manifest is well formed"
    );

    let read_err = || async {
        match snapshot::read(&l.client, &l.paths.snapshot()).await {
            Err(ZkError::Snapshot { source, .. }) => source,
            other => panic!("expected a snapshot error, got {other:?}"),
        }
    };
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut m = good.clone();
        f(&mut m);
        m
    };
    let many: Vec<String> = (0..2_000).map(|i| format!("{sha}-{i}")).collect();
    plant(&l, &with(&|m| m["parts"] = serde_json::json!(many)), &[]).await;
    assert!(matches!(
        read_err().await,
        SnapshotError::PartCount { count: 2_000 }
    ));
    plant(&l, &with(&|m| m["bytes"] = serde_json::json!(u64::MAX)), &[]).await;
    assert!(matches!(read_err().await, SnapshotError::TooLarge { .. }));
    plant(
        &l,
        &with(&|m| m["parts"] = serde_json::json!(["../../pods/x"])),
        &[],
    )
    .await;
    assert!(matches!(
        read_err().await,
        SnapshotError::PartName { index: 0, .. }
    ));
    plant(
        &l,
        &with(&|m| m["sha256"] = serde_json::json!("/etc/passwd")),
        &[],
    )
    .await;
    assert!(matches!(read_err().await, SnapshotError::BadDigest));
    plant(&l, &with(&|m| m["parts"] = serde_json::json!("x")), &[]).await;
    assert!(matches!(read_err().await, SnapshotError::Manifest(_)));
    // Announcing less than the parts hold: refused as soon as the parts outgrow it.
    plant(&l, &with(&|m| m["bytes"] = serde_json::json!(10)), &[]).await;
    assert!(matches!(read_err().await, SnapshotError::Size { expected: 10 }));
    // A part tampered with: the digest says so.
    let mut tampered = json.clone();
    let at = tampered.len() / 2;
    tampered[at] = b' ';
    plant(&l, &good, &[(&name, &tampered)]).await;
    assert!(matches!(read_err().await, SnapshotError::Digest));
    // A manifest that lies about the generation it points at.
    plant(
        &l,
        &with(&|m| m["generation"] = serde_json::json!(99)),
        &[(&name, &json)],
    )
    .await;
    assert!(matches!(
        read_err().await,
        SnapshotError::Disagrees { field: "generation" }
    ));
    // A part that is gone and stays gone: a few reads of the manifest, then an error.
    l.client
        .delete(&format!("{}/{name}", parts::dir(&l.paths.snapshot())), None)
        .await
        .unwrap();
    plant(&l, &good, &[]).await;
    assert!(matches!(read_err().await, SnapshotError::Vanishing));
    // A commit writes over all of it.
    let next = snap(8, pods(3000, "ffffffff"));
    l.commit(&next).await.unwrap();
    assert_eq!(l.read().await, next);
}

#[tokio::test]
async fn a_deposed_leaders_parts_do_not_disturb_its_successor_and_go_at_the_next_commit() {
    let zk = ZkServer::start();
    let a = Leader::start(&zk).await;
    let b_client = client(&zk).await;
    let b_node = election::enter(&b_client, &a.paths, a.acls, "b").await.unwrap();
    let first = snap(1, pods(3000, "aaaaaaaa"));
    a.commit(&first).await.unwrap();
    // a is deposed (its node removed); b leads and commits another big snapshot.
    b_client.delete(&a.node, None).await.unwrap();
    election::wait_until_leader(&b_client, &a.paths, &b_node)
        .await
        .unwrap();
    let b = Leader {
        client: b_client,
        node: b_node.path,
        paths: a.paths.clone(),
        acls: a.acls,
    };
    let second = snap(2, pods(3000, "bbbbbbbb"));
    b.commit(&second).await.unwrap();
    let err = a.commit(&snap(3, pods(3000, "cccccccc"))).await.unwrap_err();
    assert!(matches!(err, ZkError::Deposed { .. }), "{err}");
    // a's parts were written before its transaction failed: left over, next to b's.
    assert_eq!(b.read().await, second);
    let named: Vec<String> = serde_json::from_value(b.raw().await["parts"].clone()).unwrap();
    let there = b.part_names().await;
    assert!(
        named.iter().all(|n| there.contains(n)) && there.len() > named.len(),
        "{there:?}"
    );
    // The next commit of b sweeps them.
    let third = snap(4, pods(3000, "dddddddd"));
    b.commit(&third).await.unwrap();
    let names: Vec<String> = serde_json::from_value(b.raw().await["parts"].clone()).unwrap();
    assert_eq!(b.part_names().await, names);
}
