//! Test fixtures shared by the tests of maps and their delivery (model, sync).

use super::Pod;

/// Pod `n` of cluster `default.web`: uuid `u<n>`, seq `n`, at 127.0.0.`n`.
pub(crate) fn pod(n: u32) -> Pod {
    Pod {
        uuid: format!("u{n}"),
        seq: n,
        cluster: "web".into(),
        namespace: "default".into(),
        ip: format!("127.0.0.{n}"),
        host: format!("127.0.0.{n}"),
        public: format!("127.0.0.{n}"),
        control_port: 8080,
        ..Pod::default()
    }
}
