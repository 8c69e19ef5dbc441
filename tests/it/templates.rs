//! `templates[].write` (SPEC §3): an `if-absent` file is written only when nothing is at its
//! dest (a file the process rewrites itself, as ZooKeeper does its dynamic config), whatever the
//! cluster map says later; an `always` one follows every new render.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;

use crate::harness::pod::{read, Pod, PodDir, PodOptions};
use crate::runner::pod_json;

const T: Duration = Duration::from_secs(20);

const POD: &str = r#"
cluster: files
process:
  command: ["sleep", "60"]
  stop: { grace: 2s }
templates:
  - { source: gen.hbs, dest: "{{env.OCHOPOD_HOME}}/kept", write: if-absent }
  - { source: gen.hbs, dest: "{{env.OCHOPOD_HOME}}/absent", write: if-absent }
  - { source: gen.hbs, dest: "{{env.OCHOPOD_HOME}}/always" }
"#;

#[tokio::test]
async fn if_absent_files_are_written_only_where_nothing_is() {
    let dir = PodDir::new(POD).with_file("gen.hbs", "gen {{cluster.generation}}\n");
    // What a previous run of the process left: not ochopod's to overwrite.
    std::fs::create_dir_all(dir.home()).unwrap();
    std::fs::write(dir.home().join("kept"), "the process's own\n").unwrap();
    let pod = Pod::start(&dir, PodOptions::default());
    let info = pod
        .wait_info("configured and running", T, |i| {
            i["generation"] == 1 && i["process"] == "running"
        })
        .await;
    assert_eq!(
        read(&pod.home_file("kept")),
        "the process's own\n",
        "an existing file is kept"
    );
    assert_eq!(
        read(&pod.home_file("absent")),
        "gen 1\n",
        "an absent one is written"
    );
    assert_eq!(read(&pod.home_file("always")), "gen 1\n");

    // The process rewrites its file; a new map renders it differently: still not overwritten.
    std::fs::write(pod.home_file("absent"), "rewritten by the process\n").unwrap();
    let uuid = info["uuid"].as_str().unwrap();
    let map = |generation: u64| {
        json!({"generation": generation, "key": uuid, "pods": {uuid: pod_json(&info)}}).to_string()
    };
    let (status, body) = pod.post("/control/on", &map(2)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read(&pod.home_file("always")),
        "gen 2\n",
        "the new map was rendered"
    );
    assert_eq!(read(&pod.home_file("kept")), "the process's own\n");
    assert_eq!(read(&pod.home_file("absent")), "rewritten by the process\n");

    // Gone from disk: written again at the next render, from the map of then.
    std::fs::remove_file(pod.home_file("kept")).unwrap();
    let (status, body) = pod.post("/control/on", &map(3)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read(&pod.home_file("kept")),
        "gen 3\n",
        "an absent one is written"
    );
    assert_eq!(read(&pod.home_file("absent")), "rewritten by the process\n");
}
