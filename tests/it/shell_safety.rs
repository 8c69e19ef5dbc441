//! Values that reach a shell or a path (issue 8): a hostile value rendered through `{{sh ...}}`
//! into a hook and a string command arrives byte for byte and runs nothing; a rendered `dest`
//! that climbs out with `..` stops the pod before any file is written.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::eventually;
use crate::harness::pod::{read, Pod, PodDir, PodOptions};

/// Runs through every kind of shell quoting: closes single quotes, double quotes, substitutes
/// commands two ways, ends the line; each of them would create `pwned`.
fn hostile(pwned: &std::path::Path) -> String {
    let p = pwned.display();
    format!("a'; touch {p}; echo ' \"; touch {p}; echo \" $(touch {p}) `touch {p}`\ntouch {p} \\ * $HOME")
}

#[tokio::test]
async fn a_hostile_value_quoted_with_sh_reaches_the_hook_and_the_command_byte_for_byte() {
    let dir = PodDir::new(
        "cluster: quoting\n\
         process:\n  \
           command: \"printf '%s' {{sh env.HOSTILE}} > {{sh env.OCHOPOD_HOME}}/from-command\"\n  \
           restart: { policy: never }\n\
         hooks:\n  \
           pre_start: \"printf '%s' {{sh env.HOSTILE}} > {{sh env.OCHOPOD_HOME}}/from-hook\"\n",
    );
    let pwned = dir.dir.path().join("pwned");
    let value = hostile(&pwned);
    let opts = PodOptions {
        env: BTreeMap::from([("HOSTILE".to_owned(), value.clone())]),
        ..PodOptions::default()
    };
    let mut pod = Pod::start(&dir, opts);
    assert_eq!(pod.wait_exit(Duration::from_secs(30)).await, 0);
    assert_eq!(read(&pod.home_file("from-hook")), value);
    assert_eq!(read(&pod.home_file("from-command")), value);
    assert!(!pwned.exists(), "the value ran a command");
}

#[tokio::test]
async fn a_dest_climbing_out_with_dotdot_is_refused_before_any_file_is_written() {
    let dir = PodDir::new(
        "cluster: peers\n\
         process:\n  \
           command: \"sleep 60\"\n\
         templates:\n  \
           - { source: good.hbs, dest: \"{{env.OCHOPOD_HOME}}/good.cfg\" }\n  \
           - { source: peer.hbs, dest: \"{{env.OCHOPOD_HOME}}/peers/{{env.PEER}}.cfg\" }\n",
    )
    .with_file("good.hbs", "good\n")
    .with_file("peer.hbs", "peer\n");
    let opts = PodOptions {
        env: BTreeMap::from([("PEER".to_owned(), "../../escaped".to_owned())]),
        ..PodOptions::default()
    };
    let pod = Pod::start(&dir, opts);
    pod.info().await;
    let want = format!(
        "templates[1].dest: refused to write {}/peer.hbs to \"{}/peers/../../escaped.cfg\": it has a `..` component",
        dir.dir.path().display(),
        pod.home.display()
    );
    // The standalone configuration fails and the pod stays up, saying why in its log; had the
    // render gone through, good.cfg would be there.
    let refused = eventually(
        Duration::from_secs(30),
        "the refusal in /log, or files",
        || async {
            let (_, log) = pod.get("/log?lines=50").await;
            let lines: Vec<String> = serde_json::from_value(log["lines"].clone()).unwrap_or_default();
            if lines.iter().any(|l| l.contains(&want)) {
                return Some(true);
            }
            pod.home_file("good.cfg").exists().then_some(false)
        },
    )
    .await;
    assert!(
        !dir.dir.path().join("escaped.cfg").exists(),
        "written outside the home"
    );
    assert!(
        !pod.home_file("good.cfg").exists(),
        "a file of the refused render was written"
    );
    assert!(refused, "no refusal in /log");
}
