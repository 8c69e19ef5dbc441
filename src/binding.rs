//! Placeholder (the real detection is being written on the `spec` branch); same API.
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Identity {
    pub ip: String,
    pub public: String,
    pub host: String,
    pub node: String,
    pub task: String,
    pub ports: BTreeMap<String, u16>,
    pub control_port: u16,
    pub listen_port: u16,
    pub bind: String,
    pub binding: &'static str,
    pub ordinal: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BindingError(String);

pub fn detect_from_process_env(ports: &[u16]) -> Result<Identity, BindingError> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let ip = var("OCHOPOD_IP").unwrap_or_else(|| "127.0.0.1".into());
    let listen_port: u16 = var("OCHOPOD_PORT")
        .map(|p| {
            p.parse()
                .map_err(|_| BindingError(format!("OCHOPOD_PORT: {p:?} is not a port")))
        })
        .transpose()?
        .unwrap_or(8080);
    Ok(Identity {
        public: var("OCHOPOD_PUBLIC_IP").unwrap_or_else(|| ip.clone()),
        host: var("OCHOPOD_HOST").unwrap_or_else(|| ip.clone()),
        ip,
        node: String::new(),
        task: String::new(),
        ports: ports.iter().map(|p| (p.to_string(), *p)).collect(),
        control_port: listen_port,
        listen_port,
        bind: var("OCHOPOD_BIND").unwrap_or_else(|| "0.0.0.0".into()),
        binding: "explicit",
        ordinal: None,
    })
}
