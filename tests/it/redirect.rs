//! "ochopod does not follow redirects from pods" (SPEC §7): a registration pointing at a server
//! that answers every call with a redirect (307 to a POST, which a client following it would send
//! again with its body; 302 to a GET) sends neither the leader nor `ctl` anywhere else. The
//! redirect's target is a second server that counts what reaches it.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::{header, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::json;
use zookeeper_client as zkc;

use crate::cluster::{cluster_status, pod_yaml, start, PEERS, T};
use crate::harness::pod::next_ip;
use crate::harness::zk::ZkServer;
use crate::harness::{eventually, free_port};

/// A server on `ip:port` that counts the requests it gets and answers each with `answer`.
async fn serve<F, R>(ip: &str, port: u16, answer: F) -> Arc<AtomicUsize>
where
    F: Fn(Method, Uri) -> R + Clone + Send + Sync + 'static,
    R: IntoResponse,
{
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    let app = axum::Router::new().fallback(move |method: Method, uri: Uri| {
        let answer = answer.clone();
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            answer(method, uri)
        }
    });
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    count
}

#[tokio::test]
async fn neither_the_leader_nor_ctl_follow_a_pods_redirect() {
    let zk = ZkServer::start();
    let ip = next_ip();
    let (redirecting, target) = (free_port(&ip), free_port(&ip));
    let elsewhere = format!("http://{ip}:{target}");
    let calls = serve(&ip, redirecting, move |method: Method, uri: Uri| {
        let status = match method {
            Method::GET => StatusCode::FOUND,
            _ => StatusCode::TEMPORARY_REDIRECT,
        };
        (status, [(header::LOCATION, format!("{elsewhere}{uri}"))])
    })
    .await;
    let followed = serve(&ip, target, |_, _| Json200).await;

    // The redirecting server registered as a pod of the cluster (SPEC §6 layout), seq 9.
    let obs = zk.observer().await;
    let key = "redir.web";
    let fake = "redirecting-pod";
    let pod = json!({
        "uuid": fake, "seq": 9, "cluster": "web", "namespace": "redir",
        "ip": ip, "host": ip, "public": ip, "node": "", "task": "", "ports": {"9000": 9000},
        "control_port": redirecting, "binding": "explicit", "version": "0.1.0",
        "state": "running", "started": 1
    });
    let persistent = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
    let ephemeral = zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all());
    for dir in ["pods", "seqs"] {
        obs.mkdir(&format!("/ochopod/clusters/{key}/{dir}"), &persistent)
            .await
            .unwrap();
    }
    obs.create(
        &format!("/ochopod/clusters/{key}/seqs/9"),
        fake.as_bytes(),
        &persistent,
    )
    .await
    .unwrap();
    obs.create(
        &format!("/ochopod/clusters/{key}/pods/{fake}"),
        pod.to_string().as_bytes(),
        &ephemeral,
    )
    .await
    .unwrap();

    // The leader (a real pod) calls it, gets a redirect, counts it a failure and evicts it.
    let settings = "settings: { damper: 200ms, evict_after: 1, timeout: 5s }";
    let real = start(&zk, pod_yaml("redir", "web", settings, PEERS), None);
    // (A leader that followed the redirect would get its target's 200 and configure it.)
    let followed_now = || followed.load(Ordering::SeqCst);
    let status = eventually(T, "the redirecting pod evicted", || async {
        let s = cluster_status(&real).await;
        let evicted = s.starts_with("configured: 1 pods") && s.contains(fake);
        (evicted || followed_now() > 0).then_some(s)
    })
    .await;
    assert_eq!(
        followed_now(),
        0,
        "the leader followed a redirect to its target; it says: {status}"
    );
    assert!(
        calls.load(Ordering::SeqCst) >= 1,
        "the leader called the redirecting pod"
    );

    // ctl: a GET (info) and a POST (on) to it fail.
    for args in [vec!["info", "web", "-i", "9"], vec!["on", "web", "-i", "9"]] {
        let before = calls.load(Ordering::SeqCst);
        let mut all = vec!["--namespace", "redir"];
        all.extend(&args);
        let out = crate::ctl::ctl_with(&zk.connect_string(), &all, &[]).await;
        assert_eq!(
            (out.code, followed_now()),
            (1, 0),
            "{args:?} failed, following no redirect: {out:?}"
        );
        assert!(
            calls.load(Ordering::SeqCst) > before,
            "{args:?} called it: {out:?}"
        );
    }
}

/// What the redirect's target would answer: success, so that a client that followed the
/// redirect would be satisfied (and only the count tells).
#[derive(Clone, Copy)]
struct Json200;

impl IntoResponse for Json200 {
    fn into_response(self) -> axum::response::Response {
        axum::Json(json!({"ok": true})).into_response()
    }
}
