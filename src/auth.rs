//! Who may call a pod's control API (SPEC §7): the shared token list, and signed requests.
//!
//! The token is a shared secret and never travels in a request ochopod or `ochopod ctl` sends:
//! they **sign** each request with HMAC-SHA256 keyed by the first token of the list, over the
//! method, the uuid and address of the pod called, the path, a timestamp, a nonce and the body's
//! SHA-256:
//!
//! ```text
//! Authorization: Ochopod-HMAC-SHA256 t=<unix ms>,n=<nonce>,s=<hex signature>
//!
//! signed = "ochopod-v1\n" METHOD "\n" UUID "\n" HOST ":" PORT "\n" PATH?QUERY "\n" t "\n" n "\n" hex(sha256(body))
//! ```
//!
//! A pod accepts a signature made with any token of its list (rotation), from a clock within
//! [`WINDOW`] of its own, addressed to its own uuid at one of its own addresses (so that a request
//! captured on its way to one pod cannot be replayed to another, even one sharing its address),
//! and only once (the pod remembers the signatures
//! it accepted until they leave the window). A listener that registered itself through ZooKeeper
//! receives signatures, which reveal nothing of the token and are no good anywhere else.
//!
//! `Authorization: Bearer <token>` (curl in a Jenkins job) is still accepted: it sends the secret
//! itself, so it belongs on a trusted network only (docs/operations.md, "Security model").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::clock::unix_ms;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The scheme in the `Authorization` header of a signed request.
pub const SCHEME: &str = "Ochopod-HMAC-SHA256";

/// How far a signed request's timestamp may be from the receiver's clock, either way.
pub const WINDOW: Duration = Duration::from_secs(300);

/// At most this many signatures are remembered against replays; beyond, signed requests are
/// refused (503) until older ones leave the window. Only holders of the token can fill it.
const REMEMBERED: usize = 65_536;

type HmacSha256 = Hmac<Sha256>;

/// Why the token configuration is unusable. Fatal at start (exit 2): a pod that was meant to
/// require a token never runs open.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("OCHOPOD_TOKEN_FILE: cannot read {path}: {source}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{var} holds no token (expected one or more comma-separated tokens): refusing to run with the control API open")]
    Empty { var: &'static str },
}

/// The accepted tokens, in order: the first one signs, any one is accepted (rotation).
#[derive(Clone)]
pub struct Tokens(Arc<Vec<String>>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} redacted)", self.0.len())
    }
}

impl Tokens {
    /// `OCHOPOD_TOKEN`, else the file named by `OCHOPOD_TOKEN_FILE`, comma-separated. None when
    /// neither is set; an error when the one that is set is empty or unreadable (fail closed).
    /// `var` is the raw environment: a variable set to the empty string counts as set.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Result<Option<Tokens>, TokenError> {
        let (text, from) = match (var("OCHOPOD_TOKEN"), var("OCHOPOD_TOKEN_FILE")) {
            (Some(t), _) => (t, "OCHOPOD_TOKEN"),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(t) => (t, "OCHOPOD_TOKEN_FILE"),
                Err(source) => return Err(TokenError::Unreadable { path, source }),
            },
            (None, None) => return Ok(None),
        };
        let list: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        match list.is_empty() {
            true => Err(TokenError::Empty { var: from }),
            false => Ok(Some(Tokens(Arc::new(list)))),
        }
    }

    /// One token (tests, `ctl --token`).
    pub fn one(token: impl Into<String>) -> Tokens {
        Tokens(Arc::new(vec![token.into()]))
    }

    /// The signer for requests this process sends.
    pub fn signer(&self) -> Signer {
        Signer {
            key: Arc::from(self.0.first().map_or(&b""[..], |t| t.as_bytes())),
        }
    }

    /// Whether `given` is one of the tokens; the comparison does not stop at the first
    /// difference, so timing tells nothing of the prefix.
    pub fn accepts(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.0.iter().fold(false, |ok, t| {
            ok | bool::from(t.as_bytes().ct_eq(given.as_bytes()))
        })
    }
}

/// Signs requests with the first token. Cheap to clone.
#[derive(Clone)]
pub struct Signer {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(redacted)")
    }
}

impl Signer {
    /// The `Authorization` header value for one request to the pod `to` (its uuid) at `host`
    /// (`ip:port`, IPv6 without brackets), `path` (with its query) and `body`.
    pub fn authorization(&self, method: &str, to: &str, host: &str, path: &str, body: &[u8]) -> String {
        self.authorization_of_digest(method, to, host, path, &hex::encode(Sha256::digest(body)))
    }

    /// [`Signer::authorization`] for a body whose hex sha256 the caller already has (the leader
    /// hashes the part of a map every pod shares once, not once per pod).
    pub fn authorization_of_digest(
        &self,
        method: &str,
        to: &str,
        host: &str,
        path: &str,
        body_sha256: &str,
    ) -> String {
        let t = unix_ms(SystemTime::now());
        let n = uuid::Uuid::new_v4().simple().to_string();
        let signed = Signed {
            method,
            to,
            host,
            path,
            t,
            n: &n,
        };
        let s = hex::encode(mac_of(&self.key, &canonical_of_digest(&signed, body_sha256)));
        format!("{SCHEME} t={t},n={n},s={s}")
    }
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// What a signature covers, besides the body.
struct Signed<'a> {
    method: &'a str,
    /// The uuid of the pod called.
    to: &'a str,
    host: &'a str,
    path: &'a str,
    t: u64,
    n: &'a str,
}

#[cfg(test)]
fn sign(key: &[u8], s: &Signed, body: &[u8]) -> Vec<u8> {
    mac_of(key, &canonical(s, body))
}

fn mac_of(key: &[u8], canonical: &str) -> Vec<u8> {
    let mut m = mac(key);
    m.update(canonical.as_bytes());
    m.finalize().into_bytes().to_vec()
}

fn canonical(s: &Signed, body: &[u8]) -> String {
    canonical_of_digest(s, &hex::encode(Sha256::digest(body)))
}

fn canonical_of_digest(s: &Signed, digest: &str) -> String {
    let Signed {
        method,
        to,
        host,
        path,
        t,
        n,
    } = s;
    format!("ochopod-v1\n{method}\n{to}\n{host}\n{path}\n{t}\n{n}\n{digest}")
}

/// Why a request was not let in. Each is a 401 but [`Denied::Busy`] (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("authentication required: a signed request (ochopod ctl) or Authorization: Bearer <token>")]
    Missing,
    #[error("bad token")]
    BadToken,
    #[error("malformed {SCHEME} authorization: {0}")]
    Malformed(&'static str),
    #[error("signed at {skew_s}s from this pod's clock (more than {}s apart): check the clocks", WINDOW.as_secs())]
    Skew { skew_s: i64 },
    #[error("signed for {0}, not for this pod")]
    Elsewhere(String),
    #[error("bad signature")]
    BadSignature,
    #[error("this signed request was already used (a replay)")]
    Replayed,
    #[error("too many signed requests in the last {} s; retry later", WINDOW.as_secs())]
    Busy,
}

/// The receiving side: the tokens, this pod's own addresses, and the signatures already seen.
#[derive(Clone)]
pub struct Verifier {
    tokens: Tokens,
    /// This pod's uuid: a signature names the pod it is for.
    uuid: Arc<str>,
    /// `ip:port` / `name:port` this pod is called at (IPv6 without brackets).
    addresses: Arc<Vec<String>>,
    seen: Arc<Mutex<Seen>>,
}

/// Signatures accepted and not yet out of the window, with their expiry (unix ms), oldest first.
#[derive(Default)]
struct Seen {
    order: VecDeque<(u64, String)>,
    by_sig: HashMap<String, u64>,
}

impl Seen {
    /// Records `sig` until `until`; false when it is already there (a replay).
    fn admit(&mut self, sig: &str, until: u64, now: u64) -> Result<(), Denied> {
        while let Some((expiry, _)) = self.order.front() {
            if *expiry > now {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.by_sig.remove(&old);
            }
        }
        if self.by_sig.contains_key(sig) {
            return Err(Denied::Replayed);
        }
        if self.by_sig.len() >= REMEMBERED {
            return Err(Denied::Busy);
        }
        self.by_sig.insert(sig.to_string(), until);
        // Expiries are not in insertion order (clocks differ a little): keep the queue sorted
        // enough by inserting from the back.
        let at = self
            .order
            .iter()
            .rposition(|(e, _)| *e <= until)
            .map_or(0, |i| i + 1);
        self.order.insert(at, (until, sig.to_string()));
        Ok(())
    }
}

impl Verifier {
    /// `uuid`: this pod's; `addresses`: every `host:port` a caller may use to reach it.
    pub fn new(tokens: Tokens, uuid: &str, addresses: Vec<String>) -> Verifier {
        Verifier {
            tokens,
            uuid: Arc::from(uuid),
            addresses: Arc::new(addresses),
            seen: Arc::new(Mutex::new(Seen::default())),
        }
    }

    /// Checks one request's `Authorization` header (None: absent). `host` is the request's Host
    /// header; `path` includes the query.
    pub fn check(
        &self,
        authorization: Option<&str>,
        method: &str,
        host: Option<&str>,
        path: &str,
        body: &[u8],
    ) -> Result<(), Denied> {
        let now = SystemTime::now();
        match self.precheck_at(authorization, host, now)? {
            Pending::Bearer => Ok(()),
            Pending::Signed(p) => self.finish_at(p, method, path, body, now),
        }
    }

    /// Everything that can be checked before reading the body (the token of a bearer request;
    /// a signed request's form, clock and address), so that a caller without the token is
    /// refused before the pod reads anything it sends.
    pub fn precheck(&self, authorization: Option<&str>, host: Option<&str>) -> Result<Pending, Denied> {
        self.precheck_at(authorization, host, SystemTime::now())
    }

    /// The rest of a signed request's check, over its body.
    pub fn finish(&self, p: PendingSignature, method: &str, path: &str, body: &[u8]) -> Result<(), Denied> {
        self.finish_at(p, method, path, body, SystemTime::now())
    }

    fn precheck_at(
        &self,
        authorization: Option<&str>,
        host: Option<&str>,
        now: SystemTime,
    ) -> Result<Pending, Denied> {
        let header = authorization.ok_or(Denied::Missing)?.trim();
        if let Some(token) = header.strip_prefix("Bearer ") {
            return match self.tokens.accepts(token.trim()) {
                true => Ok(Pending::Bearer),
                false => Err(Denied::BadToken),
            };
        }
        let fields = header
            .strip_prefix(SCHEME)
            .and_then(|rest| rest.strip_prefix(' '))
            .ok_or(Denied::Missing)?;
        let (mut t, mut n, mut s) = (None, None, None);
        for part in fields.split(',') {
            match part.trim().split_once('=') {
                Some(("t", v)) => t = Some(v),
                Some(("n", v)) => n = Some(v),
                Some(("s", v)) => s = Some(v),
                _ => return Err(Denied::Malformed("expected t=..,n=..,s=..")),
            }
        }
        let t: u64 = t
            .and_then(|t| t.parse().ok())
            .ok_or(Denied::Malformed("t must be unix milliseconds"))?;
        let n = n
            .filter(|n| !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or(Denied::Malformed("n must be 1 to 64 letters or digits"))?;
        let s = s
            .and_then(|s| hex::decode(s).ok())
            .filter(|s| s.len() == 32)
            .ok_or(Denied::Malformed("s must be 64 hex digits"))?;
        let skew = i128::from(t) - i128::from(unix_ms(now));
        if skew.unsigned_abs() > WINDOW.as_millis() {
            let skew_s = i64::try_from(skew / 1000).unwrap_or(i64::MAX);
            return Err(Denied::Skew { skew_s });
        }
        let host = host.map(unbracket).unwrap_or_default();
        if !self.addresses.iter().any(|a| a.eq_ignore_ascii_case(&host)) {
            return Err(Denied::Elsewhere(host.chars().take(80).collect()));
        }
        Ok(Pending::Signed(PendingSignature {
            t,
            n: n.to_string(),
            s,
            host,
        }))
    }

    fn finish_at(
        &self,
        p: PendingSignature,
        method: &str,
        path: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), Denied> {
        let signed = Signed {
            method,
            to: &self.uuid,
            host: &p.host,
            path,
            t: p.t,
            n: &p.n,
        };
        let text = canonical(&signed, body);
        let good = self.tokens.0.iter().any(|key| {
            let mut m = mac(key.as_bytes());
            m.update(text.as_bytes());
            m.verify_slice(&p.s).is_ok()
        });
        if !good {
            return Err(Denied::BadSignature);
        }
        // Remembered until the timestamp leaves the window: after that the skew check refuses it.
        let until =
            p.t.saturating_add(u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX));
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.admit(&hex::encode(&p.s), until, unix_ms(now))
    }
}

/// A request that passed [`Verifier::precheck`].
#[derive(Debug)]
pub enum Pending {
    /// A good bearer token: nothing left to check.
    Bearer,
    /// A well-formed signature, in the window, for this pod's address: its body is still to check.
    Signed(PendingSignature),
}

/// A signature waiting for the body it covers.
#[derive(Debug)]
pub struct PendingSignature {
    t: u64,
    n: String,
    s: Vec<u8>,
    host: String,
}

/// `[::1]:8080` → `::1:8080`: the form signed, whatever the Host header's.
pub fn unbracket(host: &str) -> String {
    host.replace(['[', ']'], "")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn verifier(tokens: &[&str]) -> Verifier {
        let tokens = Tokens(Arc::new(tokens.iter().map(|t| t.to_string()).collect()));
        Verifier::new(tokens, "me", vec!["127.0.0.2:8080".into(), "::1:8080".into()])
    }

    fn vars(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_signed_request_passes_once_and_only_where_it_was_sent() {
        let v = verifier(&["old", "new"]);
        let a =
            Tokens::one("old")
                .signer()
                .authorization("POST", "me", "127.0.0.2:8080", "/control/on", b"{}");
        assert!(!a.contains("old"), "the token never travels: {a}");
        let check =
            |a: &str, host: &str, path: &str, body: &[u8]| v.check(Some(a), "POST", Some(host), path, body);
        assert_eq!(
            check(&a, "127.0.0.3:8080", "/control/on", b"{}"),
            Err(Denied::Elsewhere("127.0.0.3:8080".into()))
        );
        assert_eq!(
            check(&a, "127.0.0.2:8080", "/control/kill", b"{}"),
            Err(Denied::BadSignature)
        );
        assert_eq!(
            check(&a, "127.0.0.2:8080", "/control/on", b"{ }"),
            Err(Denied::BadSignature)
        );
        assert_eq!(check(&a, "127.0.0.2:8080", "/control/on", b"{}"), Ok(()));
        assert_eq!(
            check(&a, "127.0.0.2:8080", "/control/on", b"{}"),
            Err(Denied::Replayed)
        );
        // Any token of the rotation list; IPv6 hosts arrive bracketed.
        let b = Tokens::one("new")
            .signer()
            .authorization("GET", "me", "::1:8080", "/info", b"");
        assert_eq!(v.check(Some(&b), "GET", Some("[::1]:8080"), "/info", b""), Ok(()));
        let c = Tokens::one("other")
            .signer()
            .authorization("GET", "me", "::1:8080", "/info", b"");
        assert_eq!(
            v.check(Some(&c), "GET", Some("[::1]:8080"), "/info", b""),
            Err(Denied::BadSignature)
        );
        // Signed for another pod at the same address (a shared host ip): refused.
        let d = Tokens::one("new")
            .signer()
            .authorization("GET", "other-pod", "::1:8080", "/info", b"");
        assert_eq!(
            v.check(Some(&d), "GET", Some("[::1]:8080"), "/info", b""),
            Err(Denied::BadSignature)
        );
    }

    #[test]
    fn old_or_future_timestamps_and_malformed_headers_are_refused() {
        let v = verifier(&["k"]);
        let now = SystemTime::now();
        let at = |t: u64| {
            let signed = Signed {
                method: "GET",
                to: "me",
                host: "127.0.0.2:8080",
                path: "/info",
                t,
                n: "abc",
            };
            let s = hex::encode(sign(b"k", &signed, b""));
            format!("{SCHEME} t={t},n=abc,s={s}")
        };
        let late = unix_ms(now) - 301_000;
        let e = v.precheck_at(Some(&at(late)), Some("127.0.0.2:8080"), now);
        assert!(matches!(e, Err(Denied::Skew { skew_s: -301 })), "{e:?}");
        let soon = unix_ms(now) + 299_000;
        let Ok(Pending::Signed(p)) = v.precheck_at(Some(&at(soon)), Some("127.0.0.2:8080"), now) else {
            panic!("a signature 299 s ahead is in the window")
        };
        assert_eq!(v.finish_at(p, "GET", "/info", b"", now), Ok(()));
        for bad in [
            format!("{SCHEME} t=x,n=abc,s=00"),
            format!("{SCHEME} t=1,n=a;b,s=00"),
            format!("{SCHEME} t=1,n=abc,s=zz"),
            format!("{SCHEME} junk"),
        ] {
            let e = v.check(Some(&bad), "GET", Some("127.0.0.2:8080"), "/info", b"");
            assert!(matches!(e, Err(Denied::Malformed(_))), "{bad}: {e:?}");
        }
        assert_eq!(v.check(None, "GET", None, "/info", b""), Err(Denied::Missing));
        assert_eq!(
            v.check(Some("Basic x"), "GET", None, "/info", b""),
            Err(Denied::Missing)
        );
    }

    #[test]
    fn bearer_tokens_still_work_for_curl() {
        let v = verifier(&["a", "b"]);
        assert_eq!(
            v.check(Some("Bearer b"), "POST", None, "/control/off", b""),
            Ok(())
        );
        assert_eq!(
            v.check(Some("Bearer c"), "POST", None, "/control/off", b""),
            Err(Denied::BadToken)
        );
    }

    #[test]
    fn token_configuration_fails_closed() {
        assert!(Tokens::from_vars(&vars(&[])).unwrap().is_none());
        for v in ["", ",", " , "] {
            let e = Tokens::from_vars(&vars(&[("OCHOPOD_TOKEN", v)])).unwrap_err();
            assert!(e.to_string().starts_with("OCHOPOD_TOKEN holds no token"), "{e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let path: &'static str = Box::leak(empty.display().to_string().into_boxed_str());
        let e = Tokens::from_vars(&vars(&[("OCHOPOD_TOKEN_FILE", path)])).unwrap_err();
        assert!(
            e.to_string().starts_with("OCHOPOD_TOKEN_FILE holds no token"),
            "{e}"
        );
        let e = Tokens::from_vars(&vars(&[("OCHOPOD_TOKEN_FILE", "/nonexistent/t")])).unwrap_err();
        assert!(e.to_string().contains("cannot read /nonexistent/t"), "{e}");
        let t = Tokens::from_vars(&vars(&[("OCHOPOD_TOKEN", "a, b")]))
            .unwrap()
            .unwrap();
        assert!(t.accepts("b") && !t.accepts("a, b"));
    }

    #[test]
    fn the_replay_memory_forgets_expired_signatures_and_is_bounded() {
        let mut seen = Seen::default();
        assert_eq!(seen.admit("a", 10, 0), Ok(()));
        assert_eq!(seen.admit("a", 10, 5), Err(Denied::Replayed));
        assert_eq!(seen.admit("a", 20, 10), Ok(()), "expired, then seen anew");
        for i in 0..REMEMBERED - 1 {
            seen.admit(&i.to_string(), 100, 11).unwrap();
        }
        assert_eq!(seen.admit("full", 100, 11), Err(Denied::Busy));
        assert_eq!(
            seen.admit("full", 200, 100),
            Ok(()),
            "room again once they expire"
        );
    }
}
