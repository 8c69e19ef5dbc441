//! Signing: the `Authorization` header of a request ochopod or `ochopod ctl` sends, and the
//! canonical text a signature covers (the module doc of [`super`] has its layout). The token
//! itself never leaves the process.

use std::sync::Arc;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::SCHEME;
use crate::clock::unix_ms;

type HmacSha256 = Hmac<Sha256>;

/// Signs requests with the first token. Cheap to clone.
#[derive(Clone)]
pub struct Signer {
    pub(super) key: Arc<[u8]>,
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

pub(super) fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

/// What a signature covers, besides the body.
pub(super) struct Signed<'a> {
    pub(super) method: &'a str,
    /// The uuid of the pod called.
    pub(super) to: &'a str,
    pub(super) host: &'a str,
    pub(super) path: &'a str,
    pub(super) t: u64,
    pub(super) n: &'a str,
}

#[cfg(test)]
pub(super) fn sign(key: &[u8], s: &Signed, body: &[u8]) -> Vec<u8> {
    mac_of(key, &canonical(s, body))
}

fn mac_of(key: &[u8], canonical: &str) -> Vec<u8> {
    let mut m = mac(key);
    m.update(canonical.as_bytes());
    m.finalize().into_bytes().to_vec()
}

pub(super) fn canonical(s: &Signed, body: &[u8]) -> String {
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
