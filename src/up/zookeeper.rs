//! A throwaway ZooKeeper for `ochopod up`: Debian's package, one server on a free port of
//! 127.0.0.1, data in the session's folder, stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const JARS: [&str; 2] = [
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/slf4j-simple.jar",
];

pub struct LocalZk {
    pub connect: String,
    child: Child,
}

impl LocalZk {
    /// Starts the server in `dir` and waits until it answers `ruok`.
    pub fn start(dir: &Path) -> anyhow::Result<LocalZk> {
        for jar in JARS {
            if !Path::new(jar).exists() {
                bail!(
                    "{jar} is missing: install Debian's `zookeeper` package (apt-get install -y zookeeper), \
                     or point at a running ensemble with --zk HOST:PORT"
                );
            }
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for ZooKeeper")?
            .port();
        let data = dir.join("zookeeper");
        std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
        let cfg = data.join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n",
                data.display()
            ),
        )?;
        let log = std::fs::File::create(data.join("zookeeper.log"))?;
        let child = Command::new("java")
            .arg("-Xmx128m")
            .arg("-cp")
            .arg(JARS.join(":"))
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start java for ZooKeeper (is a JRE installed?)")?;
        let mut zk = LocalZk {
            connect: format!("127.0.0.1:{port}"),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ruok(&zk.connect) {
            if let Ok(Some(status)) = zk.child.try_wait() {
                bail!(
                    "ZooKeeper exited ({status}); see {}",
                    data.join("zookeeper.log").display()
                );
            }
            if Instant::now() > deadline {
                bail!("ZooKeeper did not answer on {} within 30 s", zk.connect);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(zk)
    }
}

/// The `ruok` four-letter word: `imok` when the server serves.
pub fn ruok(address: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(address) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = String::new();
    s.write_all(b"ruok").is_ok() && s.read_to_string(&mut answer).is_ok() && answer == "imok"
}

impl Drop for LocalZk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
