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

mod sign;
mod verify;

use std::sync::Arc;
use std::time::Duration;

pub use sign::Signer;
pub use verify::{unbracket, Denied, Pending, PendingSignature, Verifier};

/// The scheme in the `Authorization` header of a signed request.
pub const SCHEME: &str = "Ochopod-HMAC-SHA256";

/// How far a signed request's timestamp may be from the receiver's clock, either way.
pub const WINDOW: Duration = Duration::from_secs(300);

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        let pairs = pairs.to_vec();
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
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
}
