//! Checking: what a pod does with a request's `Authorization` header (a bearer token, or a
//! signature: its form, clock window, address, then the body it covers), and the memory of
//! signatures already accepted, so that none is accepted twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use hmac::Mac;

use super::sign::{canonical, mac, Signed};
use super::{Tokens, SCHEME, WINDOW};
use crate::clock::unix_ms;

/// At most this many signatures are remembered against replays; beyond, signed requests are
/// refused (503) until older ones leave the window. Only holders of the token can fill it.
const REMEMBERED: usize = 65_536;

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
    use crate::auth::sign::sign;

    fn verifier(tokens: &[&str]) -> Verifier {
        let tokens = Tokens(Arc::new(tokens.iter().map(|t| t.to_string()).collect()));
        Verifier::new(tokens, "me", vec!["127.0.0.2:8080".into(), "::1:8080".into()])
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
