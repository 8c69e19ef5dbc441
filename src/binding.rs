//! Who am I: the pod's addresses, ports and place, from its environment (SPEC §5).
//!
//! A pure function of the environment (and of one look at the network interfaces, passed in so
//! tests can fix it): it receives the variables and the pod.yaml's container ports and emits an
//! [`Identity`], or a [`BindingError`] naming the variable that holds a bad value. It runs once
//! at start and owns nothing afterwards.
//!
//! First match wins for the platform: Kubernetes (`KUBERNETES_SERVICE_HOST`), then Marathon/Mesos
//! (`MARATHON_APP_ID` or `MESOS_TASK_ID`), otherwise the local machine. The platform supplies
//! what it knows (pod IP, node, task, host port remapping); the explicit `OCHOPOD_*` variables
//! then override any single field, so an operator can always correct one value without losing
//! the rest. `binding` reports `explicit` when `OCHOPOD_IP` was given, else the platform.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The control port inside the container when `OCHOPOD_PORT` is not set.
pub const DEFAULT_CONTROL_PORT: u16 = 8080;

/// The pod's identity as its peers, its users and its own control API see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The address peers use.
    pub ip: String,
    /// The address outside users use (defaults to `ip`).
    pub public: String,
    /// A stable DNS name when there is one (defaults to `ip`).
    pub host: String,
    /// The machine the pod runs on, when the platform says (else empty).
    pub node: String,
    /// The platform's name for this instance: pod name, Mesos task id (else empty).
    pub task: String,
    /// Container port (as a string, the JSON key) → the port peers call.
    pub ports: BTreeMap<String, u16>,
    /// The control port peers call.
    pub control_port: u16,
    /// The control port the API listens on inside the container (`OCHOPOD_PORT`).
    pub listen_port: u16,
    /// The address the control API listens on (`OCHOPOD_BIND`, default `0.0.0.0`).
    pub bind: String,
    /// Which source found the identity: `explicit`, `kubernetes`, `marathon` or `local`.
    pub binding: &'static str,
    /// The StatefulSet ordinal, from `HOSTNAME` `name-3`, when on Kubernetes.
    pub ordinal: Option<u32>,
}

impl Identity {
    /// The seq this pod asks for first: a StatefulSet ordinal + 1 (within the seqs peers
    /// accept, [`crate::model::MAX_SEQ`]), else 0 (any).
    pub fn preferred_seq(&self) -> u32 {
        // ordinal_of leaves room for the + 1; checked all the same, as HOSTNAME is input.
        self.ordinal
            .and_then(|o| o.checked_add(1))
            .filter(|s| *s <= crate::model::MAX_SEQ)
            .unwrap_or(0)
    }
}

/// A variable holds a value ochopod cannot use. Fatal at start: the operator fixes the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error("{var}: expected a port in 1..=65535, found {value:?}")]
    BadPort { var: String, value: String },
    #[error("{var}: expected an IP address, found {value:?}")]
    BadAddress { var: String, value: String },
}

/// The platform the environment describes, before explicit overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Platform {
    Kubernetes,
    Marathon,
    Local,
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::Kubernetes => "kubernetes",
            Platform::Marathon => "marathon",
            Platform::Local => "local",
        }
    }
}

/// Detects the identity from `env` (a variable lookup), the pod.yaml's container `ports`, and
/// `first_non_loopback` (the machine's first non-loopback address, asked only when needed).
pub fn detect(
    env: &dyn Fn(&str) -> Option<String>,
    ports: &[u16],
    first_non_loopback: &dyn Fn() -> Option<String>,
) -> Result<Identity, BindingError> {
    // Empty and blank values count as unset: orchestrators often template absent values to "".
    let var = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
    let port = |name: &str| -> Result<Option<u16>, BindingError> {
        var(name).map(|v| parse_port(name, &v)).transpose()
    };
    let address = |name: &str| -> Result<Option<String>, BindingError> {
        var(name).map(|v| parse_address(name, &v)).transpose()
    };

    let platform = if var("KUBERNETES_SERVICE_HOST").is_some() {
        Platform::Kubernetes
    } else if var("MARATHON_APP_ID").is_some() || var("MESOS_TASK_ID").is_some() {
        Platform::Marathon
    } else {
        Platform::Local
    };
    let listen_port = port("OCHOPOD_PORT")?.unwrap_or(DEFAULT_CONTROL_PORT);
    let hostname = var("HOSTNAME");
    let detected = || first_non_loopback().unwrap_or_else(|| "127.0.0.1".to_owned());

    // What the platform knows. Marathon remaps each container port to a host port in PORT_<n>.
    let mut advertised = BTreeMap::new();
    let mut control_port = listen_port;
    let (platform_ip, node, task, ordinal) = match platform {
        Platform::Kubernetes => (
            address("POD_IP")?,
            var("NODE_NAME").unwrap_or_default(),
            hostname.clone().unwrap_or_default(),
            hostname.as_deref().and_then(ordinal_of),
        ),
        Platform::Marathon => {
            for p in ports {
                if let Some(host_port) = port(&format!("PORT_{p}"))? {
                    advertised.insert(p.to_string(), host_port);
                }
            }
            if let Some(host_port) = port(&format!("PORT_{listen_port}"))? {
                control_port = host_port;
            }
            let host = var("HOST");
            let task = var("MESOS_TASK_ID").unwrap_or_default();
            (host.clone(), host.unwrap_or_default(), task, None)
        }
        Platform::Local => (None, hostname.clone().unwrap_or_default(), String::new(), None),
    };

    // Explicit variables win over whatever the platform said.
    let explicit_ip = address("OCHOPOD_IP")?;
    let binding = if explicit_ip.is_some() {
        "explicit"
    } else {
        platform.name()
    };
    let ip = explicit_ip.or(platform_ip).unwrap_or_else(detected);
    let subdomain_host = match (&hostname, var("OCHOPOD_SUBDOMAIN")) {
        (Some(h), Some(sub)) => Some(format!("{h}.{sub}")),
        _ => None,
    };
    if let Some(p) = port("OCHOPOD_ADVERTISE_PORT")? {
        control_port = p;
    }
    let ports = ports
        .iter()
        .map(|p| {
            let key = p.to_string();
            let to = advertised.get(&key).copied().unwrap_or(*p);
            (key, to)
        })
        .collect();
    Ok(Identity {
        public: var("OCHOPOD_PUBLIC_IP").unwrap_or_else(|| ip.clone()),
        host: var("OCHOPOD_HOST")
            .or(subdomain_host)
            .unwrap_or_else(|| ip.clone()),
        ip,
        node,
        task,
        ports,
        control_port,
        listen_port,
        bind: address("OCHOPOD_BIND")?.unwrap_or_else(|| "0.0.0.0".to_owned()),
        binding,
        ordinal,
    })
}

/// [`detect`] over the process environment and the machine's interfaces.
pub fn detect_from_process_env(ports: &[u16]) -> Result<Identity, BindingError> {
    detect(&|name| std::env::var(name).ok(), ports, &first_non_loopback)
}

/// The first address of an interface that is up and not loopback; IPv4 preferred, because peers
/// and templates (`ip:port`) are simplest with it. Link-local IPv6 (`fe80::/10`) is skipped: it
/// is unusable without a zone id.
pub fn first_non_loopback() -> Option<String> {
    use nix::net::if_::InterfaceFlags;
    let mut v6 = None;
    for ifa in nix::ifaddrs::getifaddrs().ok()? {
        if !ifa.flags.contains(InterfaceFlags::IFF_UP) || ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
            continue;
        }
        let Some(addr) = ifa.address else { continue };
        if let Some(sin) = addr.as_sockaddr_in() {
            let ip = sin.ip();
            if !ip.is_loopback() && !ip.is_unspecified() {
                return Some(ip.to_string());
            }
        } else if let Some(sin6) = addr.as_sockaddr_in6() {
            let ip = sin6.ip();
            let link_local = (ip.segments()[0] & 0xffc0) == 0xfe80;
            if v6.is_none() && !ip.is_loopback() && !ip.is_unspecified() && !link_local {
                v6 = Some(ip.to_string());
            }
        }
    }
    v6
}

fn parse_port(var: &str, value: &str) -> Result<u16, BindingError> {
    value
        .parse::<u16>()
        .ok()
        .filter(|p| *p >= 1)
        .ok_or_else(|| BindingError::BadPort {
            var: var.to_owned(),
            value: value.to_owned(),
        })
}

fn parse_address(var: &str, value: &str) -> Result<String, BindingError> {
    value
        .parse::<IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| BindingError::BadAddress {
            var: var.to_owned(),
            value: value.to_owned(),
        })
}

/// `web-3` → 3: a StatefulSet names its pods `<set>-<ordinal>`.
fn ordinal_of(hostname: &str) -> Option<u32> {
    let (_, n) = hostname.rsplit_once('-')?;
    // StatefulSet ordinals have no leading zeros; `web-007` is some other naming scheme.
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    // Kubernetes counts replicas in an i32: anything larger is some other naming scheme (and
    // the seq, ordinal + 1, always fits).
    n.parse().ok().filter(|&o: &u32| o <= i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test that unwraps fails loudly, which is the point

    use super::*;

    /// Detects from a fixed environment; the interface lookup answers `10.1.2.3`.
    fn detect_with(vars: &[(&str, &str)], ports: &[u16]) -> Result<Identity, BindingError> {
        let env: BTreeMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        detect(&|k| env.get(k).cloned(), ports, &|| Some("10.1.2.3".into()))
    }

    fn ports(pairs: &[(&str, u16)]) -> BTreeMap<String, u16> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn local_uses_the_first_non_loopback_address() {
        let id = detect_with(&[("HOSTNAME", "laptop")], &[2181]).unwrap();
        assert_eq!(id.binding, "local");
        assert_eq!(
            (id.ip.as_str(), id.public.as_str(), id.host.as_str()),
            ("10.1.2.3", "10.1.2.3", "10.1.2.3")
        );
        assert_eq!(id.node, "laptop");
        assert_eq!(id.task, "");
        assert_eq!(id.ports, ports(&[("2181", 2181)]));
        assert_eq!((id.listen_port, id.control_port), (8080, 8080));
        assert_eq!(id.bind, "0.0.0.0");
        assert_eq!(id.ordinal, None);
    }

    #[test]
    fn local_falls_back_to_loopback_without_an_interface() {
        let id = detect(&|_| None, &[], &|| None).unwrap();
        assert_eq!((id.binding, id.ip.as_str()), ("local", "127.0.0.1"));
    }

    #[test]
    fn explicit_variables_win() {
        let id = detect_with(
            &[
                ("OCHOPOD_IP", "127.0.0.2"),
                ("OCHOPOD_PUBLIC_IP", "203.0.113.7"),
                ("OCHOPOD_HOST", "zk-1.example.com"),
                ("OCHOPOD_PORT", "9000"),
                ("OCHOPOD_ADVERTISE_PORT", "31000"),
                ("OCHOPOD_BIND", "127.0.0.2"),
            ],
            &[2181],
        )
        .unwrap();
        assert_eq!(id.binding, "explicit");
        assert_eq!(id.ip, "127.0.0.2");
        assert_eq!(id.public, "203.0.113.7");
        assert_eq!(id.host, "zk-1.example.com");
        assert_eq!((id.listen_port, id.control_port), (9000, 31000));
        assert_eq!(id.bind, "127.0.0.2");
    }

    #[test]
    fn kubernetes_reads_the_downward_api_and_the_statefulset_ordinal() {
        let id = detect_with(
            &[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("POD_IP", "10.244.1.17"),
                ("NODE_NAME", "worker-2"),
                ("HOSTNAME", "zookeeper-3"),
                ("OCHOPOD_SUBDOMAIN", "zookeeper.prod.svc.cluster.local"),
            ],
            &[2181, 2888],
        )
        .unwrap();
        assert_eq!(id.binding, "kubernetes");
        assert_eq!(id.ip, "10.244.1.17");
        assert_eq!(id.public, "10.244.1.17");
        assert_eq!(id.host, "zookeeper-3.zookeeper.prod.svc.cluster.local");
        assert_eq!(id.node, "worker-2");
        assert_eq!(id.task, "zookeeper-3");
        assert_eq!(id.ordinal, Some(3));
        // Kubernetes does not remap ports: a pod has its own IP.
        assert_eq!(id.ports, ports(&[("2181", 2181), ("2888", 2888)]));
        assert_eq!(id.control_port, 8080);
    }

    #[test]
    fn kubernetes_without_pod_ip_or_subdomain_falls_back() {
        let id = detect_with(
            &[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("HOSTNAME", "web-7d4b9c-x2k8p"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(id.binding, "kubernetes");
        assert_eq!((id.ip.as_str(), id.host.as_str()), ("10.1.2.3", "10.1.2.3"));
        assert_eq!(id.node, "");
        assert_eq!(id.ordinal, None);
    }

    #[test]
    fn an_explicit_ip_on_kubernetes_keeps_the_platform_facts() {
        let id = detect_with(
            &[
                ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
                ("POD_IP", "10.244.1.17"),
                ("HOSTNAME", "kafka-0"),
                ("OCHOPOD_IP", "192.0.2.10"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!((id.binding, id.ip.as_str()), ("explicit", "192.0.2.10"));
        assert_eq!((id.task.as_str(), id.ordinal), ("kafka-0", Some(0)));
    }

    #[test]
    fn marathon_remaps_ports_through_port_variables() {
        let id = detect_with(
            &[
                ("MARATHON_APP_ID", "/prod/zookeeper"),
                ("MESOS_TASK_ID", "prod_zookeeper.6a1f"),
                ("HOST", "10.0.5.9"),
                ("PORT_2181", "31001"),
                ("PORT_8080", "31005"),
            ],
            &[2181, 2888],
        )
        .unwrap();
        assert_eq!(id.binding, "marathon");
        assert_eq!((id.ip.as_str(), id.node.as_str()), ("10.0.5.9", "10.0.5.9"));
        assert_eq!(id.task, "prod_zookeeper.6a1f");
        assert_eq!(id.ports, ports(&[("2181", 31001), ("2888", 2888)]));
        assert_eq!((id.listen_port, id.control_port), (8080, 31005));
        assert_eq!(id.ordinal, None);
    }

    #[test]
    fn mesos_alone_is_marathon_and_an_explicit_advertise_port_wins() {
        let id = detect_with(
            &[
                ("MESOS_TASK_ID", "t1"),
                ("HOST", "agent-4.dc"),
                ("OCHOPOD_IP", "10.0.5.10"),
                ("OCHOPOD_PORT", "9000"),
                ("PORT_9000", "31005"),
                ("OCHOPOD_ADVERTISE_PORT", "31999"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(id.binding, "explicit");
        assert_eq!((id.ip.as_str(), id.node.as_str()), ("10.0.5.10", "agent-4.dc"));
        assert_eq!((id.listen_port, id.control_port), (9000, 31999));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("OCHOPOD_PORT", "http")],
                "OCHOPOD_PORT: expected a port in 1..=65535, found \"http\"",
            ),
            (
                &[("OCHOPOD_PORT", "0")],
                "OCHOPOD_PORT: expected a port in 1..=65535, found \"0\"",
            ),
            (
                &[("OCHOPOD_ADVERTISE_PORT", "70000")],
                "OCHOPOD_ADVERTISE_PORT: expected a port in 1..=65535, found \"70000\"",
            ),
            (
                &[("MESOS_TASK_ID", "t"), ("PORT_2181", "x")],
                "PORT_2181: expected a port in 1..=65535, found \"x\"",
            ),
            (
                &[("OCHOPOD_IP", "10.0.0")],
                "OCHOPOD_IP: expected an IP address, found \"10.0.0\"",
            ),
            (
                &[("KUBERNETES_SERVICE_HOST", "k"), ("POD_IP", "pod")],
                "POD_IP: expected an IP address, found \"pod\"",
            ),
            (
                &[("OCHOPOD_BIND", "any")],
                "OCHOPOD_BIND: expected an IP address, found \"any\"",
            ),
        ];
        for (vars, message) in cases {
            let err = detect_with(vars, &[2181]).unwrap_err();
            assert_eq!(err.to_string(), *message);
        }
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let id = detect_with(
            &[
                ("OCHOPOD_IP", ""),
                ("OCHOPOD_PORT", " "),
                ("KUBERNETES_SERVICE_HOST", ""),
            ],
            &[],
        )
        .unwrap();
        assert_eq!((id.binding, id.listen_port), ("local", 8080));
    }

    #[test]
    fn ordinals_come_from_a_trailing_number() {
        assert_eq!(ordinal_of("zk-0"), Some(0));
        assert_eq!(ordinal_of("my-kafka-12"), Some(12));
        assert_eq!(ordinal_of("zk"), None);
        assert_eq!(ordinal_of("zk-"), None);
        assert_eq!(ordinal_of("zk-007"), None);
        assert_eq!(ordinal_of("web-5f7b9-x2k8p"), None);
        assert_eq!(ordinal_of("web-2147483647"), Some(2147483647));
        assert_eq!(
            ordinal_of("web-4294967295"),
            None,
            "u32::MAX: its seq would overflow"
        );
        assert_eq!(ordinal_of("web-99999999999"), None);
    }

    #[test]
    fn the_preferred_seq_is_the_ordinal_plus_one_and_never_overflows() {
        let mut id = detect_with(&[("KUBERNETES_SERVICE_HOST", "k"), ("HOSTNAME", "zk-2")], &[]).unwrap();
        assert_eq!(id.preferred_seq(), 3);
        id.ordinal = Some(u32::MAX);
        assert_eq!(id.preferred_seq(), 0);
        id.ordinal = None;
        assert_eq!(id.preferred_seq(), 0);
    }

    #[test]
    fn the_machine_has_some_non_loopback_answer_or_none() {
        // Whatever the machine has, the answer is never a loopback address.
        if let Some(ip) = first_non_loopback() {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(!ip.is_loopback(), "{ip}");
        }
    }
}
