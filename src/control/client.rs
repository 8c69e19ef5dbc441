//! What the two callers of the control API (the leader, `ochopod ctl`) share: how a pod's
//! address is written in a URL, how a request is signed, and how much of an answer is read.

use crate::auth::Signer;

/// `ip:port` as a URL authority: IPv6 addresses in brackets.
pub fn address(ip: &str, port: u16) -> String {
    match ip.contains(':') {
        true => format!("[{ip}]:{port}"),
        false => format!("{ip}:{port}"),
    }
}

/// Adds the signature of a request to `pod` (see [`crate::auth`]) when there is a signer.
pub fn sign(
    req: reqwest::RequestBuilder,
    signer: Option<&Signer>,
    method: &str,
    pod: &crate::model::Pod,
    path: &str,
    body: &[u8],
) -> reqwest::RequestBuilder {
    match signer {
        Some(s) => req.header(
            reqwest::header::AUTHORIZATION,
            s.authorization(
                method,
                &pod.uuid,
                &format!("{}:{}", pod.ip, pod.control_port),
                path,
                body,
            ),
        ),
        None => req,
    }
}

/// [`sign`] for a body whose hex sha256 the caller already has.
pub fn sign_digest(
    req: reqwest::RequestBuilder,
    signer: Option<&Signer>,
    method: &str,
    pod: &crate::model::Pod,
    path: &str,
    body_sha256: &str,
) -> reqwest::RequestBuilder {
    match signer {
        Some(s) => req.header(
            reqwest::header::AUTHORIZATION,
            s.authorization_of_digest(
                method,
                &pod.uuid,
                &format!("{}:{}", pod.ip, pod.control_port),
                path,
                body_sha256,
            ),
        ),
        None => req,
    }
}

/// Reads at most `limit` bytes of an answer's body (a hostile listener could send gigabytes);
/// the rest is dropped with the connection, and the text ends with `… [cut]`. Lossy UTF-8.
pub async fn read_capped(mut r: reqwest::Response, limit: usize) -> Result<String, reqwest::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = r.chunk().await? {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            out.extend_from_slice("… [cut]".as_bytes());
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
