//! `ZkServer`: a real ZooKeeper (Debian's 3.8) on a free port of 127.0.0.1, data in a temp dir,
//! killed on drop. `stop`/`restart` keep the port and the data; `pause`/`resume` (SIGSTOP/SIGCONT)
//! freeze it, which is how tests make sessions expire.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::free_port;

const JARS: [&str; 2] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
];

/// The tick of the test server: sessions can be as short as 2 ticks.
pub const TICK_MS: u64 = 200;

pub struct ZkServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl ZkServer {
    /// Starts a server and waits until it answers `imok`. Fails, naming the package, when
    /// ZooKeeper is not installed: these tests must not pass by skipping.
    pub fn start() -> ZkServer {
        ZkServer::start_with("")
    }

    /// As [`ZkServer::start`], with `extra` lines appended to zoo.cfg (`maxClientCnxns=2\n`).
    pub fn start_with(extra: &str) -> ZkServer {
        for jar in JARS {
            assert!(
                Path::new(jar).exists(),
                "{jar} is missing: install the Debian package `zookeeper` (and java) to run the cluster tests"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port("127.0.0.1");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let cfg = format!(
            "tickTime={TICK_MS}\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n4lw.commands.whitelist=*\nmaxSessionTimeout=60000\n{extra}",
            data.display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg).expect("zoo.cfg");
        let mut zk = ZkServer {
            port,
            dir,
            child: None,
        };
        zk.launch();
        zk
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("zookeeper.log"))
            .expect("log file");
        let child = Command::new("java")
            .arg("-Xmx256m")
            .arg("-cp")
            .arg(JARS.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(self.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn java (install the Debian package `zookeeper`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.is_ok() {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("ZooKeeper exited at start ({status}); log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ZooKeeper did not answer imok within 30s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `host:port`, for `OCHOPOD_ZK`.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client session of the test's own, to look at (or tamper with) what the pods wrote.
    pub async fn observer(&self) -> zookeeper_client::Client {
        let cfg = ochopod::zk::ZkConfig {
            connect: self.connect_string(),
            session_timeout: Duration::from_secs(4),
            auth: None,
        };
        ochopod::zk::connect(&cfg).await.expect("an observer session")
    }

    /// The answer to a four-letter word (`cons`, `wchp`...; all are whitelisted), empty when the
    /// server does not answer.
    pub fn four_letter(&self, word: &str) -> String {
        let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(500))
        else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(word.as_bytes()).is_err() {
            return String::new();
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// The watches the server holds, by path: the session ids (`0x...`, as `wchp` prints them)
    /// watching each. What a client waits on, seen from outside it.
    pub fn watches(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
        let mut path = None;
        for line in self.four_letter("wchp").lines() {
            if line.starts_with('/') {
                path = Some(line.trim().to_string());
            } else if let (Some(p), session) = (&path, line.trim()) {
                if session.starts_with("0x") {
                    out.entry(p.clone()).or_default().push(session.to_string());
                }
            }
        }
        out
    }

    /// Whether the server answers `ruok` with `imok`.
    pub fn is_ok(&self) -> bool {
        let Ok(mut s) =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(200))
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"ruok").is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out == "imok"
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default()
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("server running").id() as i32)
    }

    /// Kills the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Freezes the server (SIGSTOP): clients lose their connection; sessions expire once it
    /// resumes if they were frozen longer than their timeout.
    pub fn pause(&self) {
        kill(self.pid(), Signal::SIGSTOP).expect("SIGSTOP");
    }

    pub fn resume(&self) {
        kill(self.pid(), Signal::SIGCONT).expect("SIGCONT");
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused JVM does not die of KILL any slower, but make sure it is not left stopped.
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
        }
        self.stop();
    }
}
