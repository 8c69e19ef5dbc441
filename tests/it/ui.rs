//! `ochopod ctl ui` in a real browser: Debian's headless Chromium against a live local cluster
//! (a real ZooKeeper, real pods registering through their sync loop, the real binary serving the
//! page). The checks read what a person sees: the rows, their colours (as the row's `health`),
//! the leader's star, the dependency arrows, the log panel.

#![allow(clippy::unwrap_used)] // tests may unwrap (COMMON.md)

mod bench;
mod cdp;

use serde_json::Value;

use crate::ctl::{ctl_with, Fixture, T};
use crate::harness::free_port;
use crate::harness::pod::binary;
use cdp::{Browser, Page};

/// A running `ochopod ctl ui`, killed on drop.
pub struct Ui {
    _child: tokio::process::Child,
    pub url: String,
}

impl Ui {
    pub async fn start(zk: &str, token: Option<&str>, args: &[&str]) -> Ui {
        let port = free_port("127.0.0.1");
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = tokio::process::Command::new(binary());
        cmd.args(["ctl", "--zk", zk, "ui", "--listen", &listen])
            .args(args)
            .env_remove("OCHOPOD_TOKEN")
            .env_remove("OCHOPOD_TOKEN_FILE")
            .env_remove("OCHOPOD_NAMESPACE")
            .kill_on_drop(true);
        if let Some(t) = token {
            cmd.env("OCHOPOD_TOKEN", t);
        }
        let child = cmd.spawn().unwrap();
        let url = format!("http://{listen}/");
        let model = format!("{url}api/model");
        crate::harness::eventually(T, "the UI's first model", || async {
            let v: Value = reqwest::get(&model).await.ok()?.json().await.ok()?;
            (v["version"].as_u64() > Some(0)).then_some(())
        })
        .await;
        Ui { _child: child, url }
    }
}

/// Every pod row as the page shows it.
const ROWS: &str = "[...document.querySelectorAll('tr.pod')].map(r => ({cluster: r.dataset.cluster, \
    seq: +r.dataset.seq, uuid: r.dataset.uuid, health: r.dataset.health, text: r.innerText}))";

fn rows_of<'a>(rows: &'a Value, cluster: &str) -> Vec<&'a Value> {
    rows.as_array()
        .map(|a| a.iter().filter(|r| r["cluster"] == cluster).collect())
        .unwrap_or_default()
}

async fn rows_until(page: &mut Page, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    page.until(what, T, ROWS, pred).await
}

#[tokio::test]
async fn the_page_shows_pods_leaders_dependencies_and_changes_live() {
    let mut fx = Fixture::new().await;
    let token = "ui-test-token";
    fx.token = Some(token.into());
    let zk = fx.zk.connect_string();
    let mut db = fx.start_synced("db", 2, "settings: { damper: 200ms, min_size: 2 }\n");
    let _web = fx.start_synced(
        "web",
        2,
        "depends_on: [db]\nsettings: { damper: 200ms, min_size: 2 }\n",
    );
    let env = [("OCHOPOD_TOKEN", token)];
    for cluster in ["db", "web"] {
        let out = ctl_with(&zk, &["wait", cluster, "--count", "2", "--timeout", "60s"], &env).await;
        assert_eq!(out.code, 0, "{out:?}");
    }
    let ui = Ui::start(&zk, Some(token), &["--refresh", "2s"]).await;
    let browser = Browser::start().await;
    let mut page = browser.page().await;
    page.navigate(&ui.url).await;

    // Both clusters, every pod answering, one leader each (★), the leader's status line.
    let rows = rows_until(&mut page, "4 healthy pods", |rows| {
        let all = rows.as_array().map(Vec::len) == Some(4);
        all && rows.as_array().unwrap().iter().all(|r| r["health"] == "ok")
    })
    .await;
    for cluster in ["default.db", "default.web"] {
        let mine = rows_of(&rows, cluster);
        let leaders: Vec<_> = mine
            .iter()
            .filter(|r| r["text"].as_str().unwrap().contains('★'))
            .collect();
        assert_eq!(leaders.len(), 1, "one leader in {cluster}: {rows:#}");
        assert!(
            leaders[0]["text"].as_str().unwrap().contains("leader"),
            "{rows:#}"
        );
    }
    let status = page
        .until(
            "the leaders' status",
            T,
            "[...document.querySelectorAll('.leader-status')].map(p => p.textContent)",
            |v| {
                v.as_array().is_some_and(|a| {
                    a.len() == 2 && a.iter().all(|s| s.as_str().unwrap().contains("configured"))
                })
            },
        )
        .await;
    assert!(status[0].as_str().unwrap().starts_with("leader: "), "{status}");
    let live = page.eval("document.getElementById('live').textContent").await;
    assert_eq!(live, "live", "the SSE stream is connected");

    // The dependency graph: two boxes, one arrow web -> db, not red.
    const EDGES: &str = "[...document.querySelectorAll('#graph line')].map(l => ({from: l.dataset.from, \
        to: l.dataset.to, bad: l.classList.contains('bad')}))";
    let edges = page.eval(EDGES).await;
    assert_eq!(
        edges,
        serde_json::json!([{"from": "default.web", "to": "default.db", "bad": false}])
    );
    let boxes = page
        .eval("document.querySelectorAll('#graph g.node').length")
        .await;
    assert_eq!(boxes, 2);

    // A click on a row: its log tail, fetched by the server with a signed call (the pods have a
    // token; the page never sees it).
    page.eval("document.querySelector('tr.pod[data-cluster=\"default.db\"]').click()")
        .await;
    let log = page
        .until(
            "the log tail",
            T,
            "document.getElementById('log-lines').textContent",
            |v| v.as_str().is_some_and(|t| t.contains("cluster map applied")),
        )
        .await;
    assert!(!log.as_str().unwrap().starts_with("error"), "{log}");
    let html = page.eval("document.documentElement.outerHTML").await;
    assert!(
        !html.as_str().unwrap().contains(token),
        "the token never reaches the browser"
    );

    // A container killed: its row turns red (its /info fails) or goes (its session expired).
    let follower = rows_of(&rows, "default.db")
        .into_iter()
        .find(|r| !r["text"].as_str().unwrap().contains('★'))
        .unwrap()
        .clone();
    let text = follower["text"].as_str().unwrap();
    let index = db
        .iter()
        .position(|(_, p)| text.contains(&format!("{}:", p.ip)))
        .unwrap();
    db[index].1.kill_hard();
    let uuid = follower["uuid"].clone();
    rows_until(&mut page, "the killed pod red or gone", |rows| {
        let row = rows.as_array().unwrap().iter().find(|r| r["uuid"] == uuid);
        row.is_none_or(|r| r["health"] == "bad")
    })
    .await;
    if let Ok(path) = std::env::var("OCHOPOD_UI_SCREENSHOT") {
        std::fs::write(&path, page.screenshot().await).unwrap();
    }

    // A new pod: a row appears, healthy.
    let more = fx.start_synced("db", 1, "settings: { damper: 200ms, min_size: 2 }\n");
    let ip = format!("{}:", more[0].1.ip);
    rows_until(&mut page, "the new pod", |rows| {
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["text"].as_str().unwrap().contains(&ip) && r["health"] == "ok")
    })
    .await;

    // Every db pod killed: web's dependency has no live pod, its arrow turns red.
    for (_, p) in db.iter_mut() {
        p.kill_hard();
    }
    let mut more = more;
    more[0].1.kill_hard();
    page.until("a red dependency arrow", T, EDGES, |v| v[0]["bad"] == true)
        .await;
    let events = page
        .eval("[...document.querySelectorAll('#events li')].map(l => l.textContent)")
        .await;
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("expired")),
        "the events list shows the expiries: {events:#}"
    );
}

#[tokio::test]
async fn values_from_zookeeper_are_text_and_the_server_keeps_to_itself() {
    let fx = Fixture::new().await;
    let zk = fx.zk.connect_string();
    // A registration that is not a pod, named like markup: shown as text, never run.
    let dir = "/ochopod/clusters/default.evil/pods";
    let persistent = zookeeper_client::CreateMode::Persistent.with_acls(zookeeper_client::Acls::anyone_all());
    fx.client.mkdir(dir, &persistent).await.unwrap();
    let name = "<img src=x onerror=document.title='pwned'>";
    fx.client
        .create(
            &format!("{dir}/{name}"),
            b"<script>document.title='pwned'</script>",
            &persistent,
        )
        .await
        .unwrap();
    let ui = Ui::start(&zk, None, &[]).await;
    let browser = Browser::start().await;
    let mut page = browser.page().await;
    page.navigate(&ui.url).await;
    let warning = page
        .until(
            "the rejected registration",
            T,
            "[...document.querySelectorAll('.warning')].map(p => p.textContent)",
            |v| v.as_array().is_some_and(|a| !a.is_empty()),
        )
        .await;
    assert!(warning[0].as_str().unwrap().contains(name), "{warning}");
    let (images, scripts, title) = (
        page.eval("document.querySelectorAll('img').length").await,
        page.eval("document.querySelectorAll('script').length").await,
        page.eval("document.title").await,
    );
    assert_eq!((images, scripts, title), (0.into(), 1.into(), "ochopod".into()));

    // Read-only, loopback names only, pods of the page only.
    let client = reqwest::Client::new();
    let get = |path: &str, host: Option<&str>| {
        let mut req = client.get(format!("{}{path}", ui.url));
        if let Some(h) = host {
            req = req.header("host", h);
        }
        async move { req.send().await.unwrap() }
    };
    let r = get("api/model", Some("evil.example:80")).await;
    assert_eq!(r.status(), 403, "a foreign Host (DNS rebinding) is refused");
    let r = get("api/model", Some("localhost")).await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let r = get("api/log?cluster=default.evil&uuid=nope", None).await;
    assert_eq!(r.status(), 404);
    let r = client.post(format!("{}api/model", ui.url)).send().await.unwrap();
    assert_eq!(r.status(), 405, "nothing to POST");
}

#[tokio::test]
async fn the_server_closes_a_half_sent_request_like_a_pods_control_api() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fx = Fixture::new().await;
    let ui = Ui::start(&fx.zk.connect_string(), None, &[]).await;
    let address = ui.url.trim_start_matches("http://").trim_end_matches('/');
    let mut slow = tokio::net::TcpStream::connect(address).await.unwrap();
    // Headers that never end: served by axum::serve, this connection (and its fd) stayed open.
    slow.write_all(b"GET /api/model HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                // hyper may answer 408 before closing: still closed by the server.
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after {:?}", start.elapsed());
    let took = start.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(4),
        "closed too early: {took:?}"
    );
    // The page still answers.
    let r = reqwest::get(format!("{}api/model", ui.url)).await.unwrap();
    assert_eq!(r.status(), 200);
}
