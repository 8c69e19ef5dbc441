//! `ochopod ctl events [CLUSTERS...] [--follow] [--json]`: what changes in the clusters, one line
//! per change, for a CI log while a deployment runs or as an audit trail.
//!
//! Receives the [`watch`] updates; emits, on stdout, the current state as events
//! (every pod registered, the leaders, the last configurations) and then, with `--follow`, each
//! change as the watcher sees it:
//!
//! ```text
//! 2026-12-01T22:40:01Z default.zk #3 registered 127.0.0.4
//! 2026-12-01T22:40:03Z default.zk configured generation 2: #1 #2 #3
//! ```
//!
//! or JSON lines with `--json` (`{"time", "cluster", "kind", ...}`). Runs until interrupted (or
//! until stdout is closed: `| head` ends it); without `--follow`, exits after the current state.

use std::io::Write;

use super::context::Ctx;
use super::watch::{self, Change, Event};
use super::{CtlError, EXIT_OK};
use crate::model::PodState;

/// Control characters of untrusted values (snapshot fields, rejected registrations) escaped, so
/// that a line cannot move the cursor or rewrite the terminal.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_debug().to_string(),
            false => c.to_string(),
        })
        .collect()
}

fn state(s: PodState) -> &'static str {
    match s {
        PodState::Running => "running",
        PodState::Held => "held",
        PodState::Failed => "failed",
        PodState::Leaving => "leaving",
    }
}

/// One event as a person reads it.
pub fn human(e: &Event) -> String {
    let pod = |seq: u32, what: &str, ip: &str| format!("#{seq} {what} {ip}");
    let body = match &e.change {
        Change::Registered {
            seq, ip, state: s, ..
        } => match s {
            PodState::Running => pod(*seq, "registered", ip),
            other => format!("{} ({})", pod(*seq, "registered", ip), state(*other)),
        },
        Change::Left { seq, ip, .. } => pod(*seq, "left", ip),
        Change::Expired { seq, ip, .. } => pod(*seq, "expired", ip),
        Change::Held { seq, ip, was, .. } => format!("{} (was {})", pod(*seq, "held", ip), state(*was)),
        Change::Failed { seq, ip, was, .. } => format!("{} (was {})", pod(*seq, "failed", ip), state(*was)),
        Change::Leaving { seq, ip, was, .. } => format!("{} (was {})", pod(*seq, "leaving", ip), state(*was)),
        Change::Running { seq, ip, was, .. } => format!("{} (was {})", pod(*seq, "running", ip), state(*was)),
        Change::Configured { generation, seqs } => {
            let pods: Vec<String> = seqs.iter().map(|s| format!("#{s}")).collect();
            match pods.is_empty() {
                true => format!("configured generation {generation}: no pods"),
                false => format!("configured generation {generation}: {}", pods.join(" ")),
            }
        }
        Change::Leader {
            seq: Some(seq), ip, ..
        } => {
            format!("leader #{seq} {}", ip.as_deref().unwrap_or("-"))
        }
        Change::Leader { uuid: Some(uuid), .. } => format!("leader {} (not registered)", clean(uuid)),
        Change::Leader { .. } => "leader none".to_string(),
        Change::Evicted { seq: Some(seq), .. } => format!("#{seq} evicted"),
        Change::Evicted { uuid, .. } => format!("{} evicted", clean(uuid)),
        Change::DependsOn { depends_on, .. } if depends_on.is_empty() => "depends_on (none)".to_string(),
        Change::DependsOn { depends_on, .. } => format!("depends_on {}", clean(&depends_on.join(", "))),
        Change::Rejected { znode, reason } => {
            format!("rejected registration {:?}: {}", clean(znode), clean(reason))
        }
        Change::Paused { by, reason } => {
            let by = match by {
                crate::zk::pause::PausedBy::Operator => "an operator",
                crate::zk::pause::PausedBy::Leader => "the leader",
            };
            match reason.is_empty() {
                true => format!("paused by {by}"),
                false => format!("paused by {by}: {}", clean(reason)),
            }
        }
        Change::Resumed => "resumed".to_string(),
    };
    format!("{} {} {body}", e.time, e.cluster)
}

/// Prints the events of the selected clusters; false once stdout is closed.
fn print(events: &[Event], json: bool, namespace: &str, patterns: &[String]) -> bool {
    let mut stdout = std::io::stdout().lock();
    for e in events
        .iter()
        .filter(|e| watch::selected(&e.cluster, patterns, namespace))
    {
        let line = match json {
            true => serde_json::to_string(e).unwrap_or_default(),
            false => human(e),
        };
        if writeln!(stdout, "{line}").is_err() {
            return false;
        }
    }
    stdout.flush().is_ok()
}

pub async fn run(ctx: Ctx, patterns: Vec<String>, follow: bool) -> Result<i32, CtlError> {
    if !follow {
        let model = watch::read_model(&ctx.zk).await?;
        let now = crate::clock::rfc3339(std::time::SystemTime::now());
        let events = watch::diff(&watch::Model::default(), &model, &Default::default(), &now);
        print(&events, ctx.json, &ctx.namespace, &patterns);
        return Ok(EXIT_OK);
    }
    let (json, namespace) = (ctx.json, ctx.namespace);
    let mut updates = watch::spawn(ctx.zk);
    while let Some(update) = updates.recv().await {
        if !print(&update.events, json, &namespace, &patterns) {
            break;
        }
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(change: Change) -> Event {
        Event {
            time: "2026-12-01T22:40:01Z".into(),
            cluster: "default.zk".into(),
            change,
        }
    }

    #[test]
    fn reads_like_a_log_line() {
        let e = event(Change::Registered {
            seq: 3,
            uuid: "u".into(),
            ip: "127.0.0.4".into(),
            state: PodState::Running,
        });
        assert_eq!(
            human(&e),
            "2026-12-01T22:40:01Z default.zk #3 registered 127.0.0.4"
        );
        let e = event(Change::Held {
            seq: 3,
            uuid: "u".into(),
            ip: "127.0.0.4".into(),
            was: PodState::Running,
        });
        assert_eq!(
            human(&e),
            "2026-12-01T22:40:01Z default.zk #3 held 127.0.0.4 (was running)"
        );
        let e = event(Change::Configured {
            generation: 2,
            seqs: vec![1, 2],
        });
        assert!(human(&e).ends_with("default.zk configured generation 2: #1 #2"));
        let e = event(Change::Leader {
            seq: None,
            uuid: None,
            ip: None,
        });
        assert!(human(&e).ends_with("default.zk leader none"));
    }

    #[test]
    fn a_pause_says_by_whom_and_why() {
        let e = event(Change::Paused {
            by: crate::zk::pause::PausedBy::Operator,
            reason: "kernel upgrade".into(),
        });
        let line = human(&e);
        assert!(line.ends_with("paused by an operator: kernel upgrade"), "{line}");
    }

    #[test]
    fn untrusted_values_cannot_drive_the_terminal() {
        let e = event(Change::DependsOn {
            depends_on: vec!["a\u{1b}[2Jb".into()],
            added: vec![],
            removed: vec![],
        });
        let line = human(&e);
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(line.ends_with("depends_on a\\u{1b}[2Jb"), "{line}");
        let e = event(Change::Rejected {
            znode: "x\ny".into(),
            reason: "bad\r".into(),
        });
        assert!(!human(&e).contains(['\n', '\r']));
    }
}
