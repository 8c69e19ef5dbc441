//! The one HTTP client of the control API (SPEC §7), for its two callers: the leader
//! (`sync::calls`) and `ochopod ctl` (`ctl::http`), and `ochopod up`'s status view.
//!
//! A [`Call`] is one request to a pod: its method, the pod's address (an IP literal: nothing is
//! resolved, IPv6 goes in brackets), a path, a JSON body for a POST, and a signature (see
//! [`crate::auth`]) or a bearer token. [`Call::send`] opens one TCP connection, sends the request
//! over HTTP/1.1, reads at most a given number of bytes of the answer and closes the connection,
//! all within one deadline. Nothing is pooled: the leader calls each pod a few times per
//! configuration, and a connection to a pod on the same network costs less than the call.
//! Redirects are not followed (a pod answers, it does not send its caller elsewhere) and no
//! proxy from the environment is used (pods are addressed directly).

use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::time::Duration;

use futures_util::future::{self, Either};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::auth::Signer;
use crate::model::Pod;

/// `ip:port` as a URL authority: IPv6 addresses in brackets.
pub fn address(ip: &str, port: u16) -> String {
    match ip.contains(':') {
        true => format!("[{ip}]:{port}"),
        false => format!("{ip}:{port}"),
    }
}

/// Why a call got no answer. Nobody retries a call here: the leader's next round calls again,
/// `ctl` reports the pod as failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The pod's address is not an IP address (pods register IP literals, SPEC §6).
    #[error("`{ip}` is not an IP address")]
    Address {
        ip: String,
        #[source]
        source: std::net::AddrParseError,
    },
    /// The path or a header cannot be sent as given (a caller's bug, or a path from user input).
    #[error("cannot build the request")]
    Request(#[source] hyper::http::Error),
    /// Nothing listens, or the network refused (refused, unreachable, reset during connect).
    #[error("cannot connect")]
    Connect(#[source] std::io::Error),
    /// The connection broke or the answer was not HTTP.
    #[error("the HTTP exchange failed")]
    Http(#[source] hyper::Error),
    /// No whole answer within the call's timeout (connection, request and body together).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl CallError {
    /// The innermost cause, the words that say why (`Connection refused (os error 111)`).
    pub fn cause(&self) -> String {
        let mut source: &dyn std::error::Error = self;
        while let Some(s) = source.source() {
            source = s;
        }
        source.to_string()
    }

    /// This error and its causes, `: `-separated.
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        text
    }
}

/// What a pod answered: its status and at most the read limit of its body (lossy UTF-8, ending
/// with `… [cut]` when cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub text: String,
}

/// One request to a pod's control API.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    ip: String,
    port: u16,
    path: String,
    body: Vec<u8>,
    authorization: Option<String>,
}

impl Call {
    /// `GET <path>` to `ip:port`.
    pub fn get(ip: &str, port: u16, path: &str) -> Call {
        Call::new(Method::GET, ip, port, path, Vec::new())
    }

    /// `POST <path>` to `ip:port` with a JSON body (empty: an operator's `on`/`off`, SPEC §7).
    pub fn post(ip: &str, port: u16, path: &str, body: Vec<u8>) -> Call {
        Call::new(Method::POST, ip, port, path, body)
    }

    /// `GET` or `POST` (`post`) to `pod`'s control port.
    pub fn to(pod: &Pod, post: bool, path: &str, body: Vec<u8>) -> Call {
        let method = if post { Method::POST } else { Method::GET };
        Call::new(method, &pod.ip, pod.control_port, path, body)
    }

    fn new(method: Method, ip: &str, port: u16, path: &str, body: Vec<u8>) -> Call {
        Call {
            method,
            ip: ip.to_string(),
            port,
            path: path.to_string(),
            body,
            authorization: None,
        }
    }

    /// `http://ip:port/path`, for messages.
    pub fn url(&self) -> String {
        format!("http://{}{}", address(&self.ip, self.port), self.path)
    }

    /// Signs the call for `pod` when there is a signer (the token itself is never sent).
    pub fn signed(self, signer: Option<&Signer>, pod: &Pod) -> Call {
        let Some(s) = signer else { return self };
        let authorization = s.authorization(
            self.method.as_str(),
            &pod.uuid,
            &format!("{}:{}", pod.ip, pod.control_port),
            &self.path,
            &self.body,
        );
        Call {
            authorization: Some(authorization),
            ..self
        }
    }

    /// [`Call::signed`] for a body whose hex sha256 the caller already has.
    pub fn signed_digest(self, signer: Option<&Signer>, pod: &Pod, body_sha256: &str) -> Call {
        let Some(s) = signer else { return self };
        let authorization = s.authorization_of_digest(
            self.method.as_str(),
            &pod.uuid,
            &format!("{}:{}", pod.ip, pod.control_port),
            &self.path,
            body_sha256,
        );
        Call {
            authorization: Some(authorization),
            ..self
        }
    }

    /// Sends a bearer token (what `curl` would do; `ochopod up` reads its own pods so).
    pub fn bearer(self, token: &str) -> Call {
        Call {
            authorization: Some(format!("Bearer {token}")),
            ..self
        }
    }

    /// Sends the call and reads at most `limit` bytes of the answer (a hostile listener could
    /// send gigabytes; the rest is dropped with the connection), all within `timeout`.
    pub async fn send(self, timeout: Duration, limit: usize) -> Result<Response, CallError> {
        match tokio::time::timeout(timeout, self.exchange(limit)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    async fn exchange(self, limit: usize) -> Result<Response, CallError> {
        let ip: IpAddr = self.ip.parse().map_err(|source| CallError::Address {
            ip: self.ip.clone(),
            source,
        })?;
        let mut req = hyper::Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(HOST, address(&self.ip, self.port));
        if self.method == Method::POST {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(a) = &self.authorization {
            req = req.header(AUTHORIZATION, a.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(self.body)))
            .map_err(CallError::Request)?;
        let stream = TcpStream::connect(SocketAddr::new(ip, self.port))
            .await
            .map_err(CallError::Connect)?;
        // Small requests and answers: send each as soon as it is written.
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(CallError::Http)?;
        let work = pin!(async move {
            let response = sender.send_request(req).await?;
            let status = response.status();
            let text = read_capped(response.into_body(), limit).await?;
            Ok::<_, hyper::Error>(Response { status, text })
        });
        // The connection is driven here, in this task, alongside the exchange: nothing outlives
        // the call. When it ends first (the pod closed after its answer), what it read is
        // already handed over and the exchange finishes on its own.
        match future::select(work, pin!(conn)).await {
            Either::Left((r, _)) => r.map_err(CallError::Http),
            Either::Right((Err(e), _)) => Err(CallError::Http(e)),
            Either::Right((Ok(()), work)) => work.await.map_err(CallError::Http),
        }
    }
}

/// Reads at most `limit` bytes of a body; the text ends with `… [cut]` when there was more.
/// Lossy UTF-8.
async fn read_capped(mut body: hyper::body::Incoming, limit: usize) -> Result<String, hyper::Error> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame?.into_data() else { continue };
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            out.extend_from_slice("… [cut]".as_bytes());
            break;
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A listener on `ip` that answers every connection with `answer` (written whole, then the
    /// connection is closed) and hands each request's head to the test.
    async fn serve(ip: &str, answer: Vec<u8>) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            }
        });
        (port, rx)
    }

    fn pod(ip: &str, port: u16) -> Pod {
        Pod {
            uuid: "u1".into(),
            ip: ip.into(),
            control_port: port,
            ..Pod::default()
        }
    }

    /// The value of `name` in a request head (`name` lowercase).
    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            (n.eq_ignore_ascii_case(name)).then(|| v.trim())
        })
    }

    #[tokio::test]
    async fn a_post_carries_its_host_json_body_and_a_signature_the_pod_accepts() {
        let (port, mut heads) = serve(
            "127.0.0.1",
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n{\"ok\":true}".to_vec(),
        )
        .await;
        let tokens = crate::auth::Tokens::one("tok");
        let p = pod("127.0.0.1", port);
        let r = Call::to(&p, true, "/control/check?x=1", b"{}".to_vec())
            .signed(Some(&tokens.signer()), &p)
            .send(Duration::from_secs(5), 1024)
            .await
            .unwrap();
        assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, "{\"ok\":true}"));
        let head = heads.recv().await.unwrap();
        assert!(head.starts_with("POST /control/check?x=1 HTTP/1.1\r\n"), "{head}");
        let host = format!("127.0.0.1:{port}");
        assert_eq!(header(&head, "host"), Some(host.as_str()));
        assert_eq!(header(&head, "content-type"), Some("application/json"));
        assert_eq!(header(&head, "content-length"), Some("2"));
        let verifier = crate::auth::Verifier::new(tokens, "u1", vec![host.clone()]);
        let signature = header(&head, "authorization");
        verifier
            .check(signature, "POST", Some(&host), "/control/check?x=1", b"{}")
            .unwrap();
        assert!(
            !head.contains("tok\r\n"),
            "the token itself is never sent: {head}"
        );
    }

    #[tokio::test]
    async fn an_ipv6_pod_is_reached_with_its_address_in_brackets() {
        let Ok(probe) = TcpListener::bind(("::1", 0)).await else {
            return; // no IPv6 loopback here
        };
        drop(probe);
        let (port, mut heads) = serve("::1", b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec()).await;
        let call = Call::get("::1", port, "/info");
        assert_eq!(call.url(), format!("http://[::1]:{port}/info"));
        let r = call.send(Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains(&format!("host: [::1]:{port}\r\n")), "{head}");
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_not_followed() {
        let (elsewhere, mut followed) = serve(
            "127.0.0.1",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        )
        .await;
        let redirect = format!("HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:{elsewhere}/x\r\ncontent-length: 0\r\n\r\n");
        let (port, _heads) = serve("127.0.0.1", redirect.into_bytes()).await;
        let r = Call::post("127.0.0.1", port, "/control/on", Vec::new())
            .send(Duration::from_secs(5), 1024)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT);
        assert!(followed.try_recv().is_err(), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_huge_answer_is_cut_at_the_limit() {
        let mut answer = b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n".to_vec();
        answer.resize(answer.len() + 1_000_000, b'x');
        let (port, _heads) = serve("127.0.0.1", answer).await;
        let r = Call::get("127.0.0.1", port, "/log")
            .send(Duration::from_secs(5), 100)
            .await
            .unwrap();
        assert_eq!(r.text, format!("{}… [cut]", "x".repeat(100)));
    }

    #[tokio::test]
    async fn a_listener_that_never_answers_is_a_timeout() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let start = Instant::now();
        let e = Call::get("127.0.0.1", port, "/info")
            .send(Duration::from_millis(200), 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Timeout(_)), "{e:?}");
        assert!(start.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[tokio::test]
    async fn a_closed_port_says_connection_refused() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = Call::get("127.0.0.1", port, "/info")
            .send(Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Connect(_)), "{e:?}");
        assert!(e.cause().contains("Connection refused"), "{}", e.cause());
        assert!(
            e.with_causes().starts_with("cannot connect: "),
            "{}",
            e.with_causes()
        );
    }

    #[tokio::test]
    async fn a_host_name_is_not_resolved() {
        let e = Call::get("localhost", 1, "/info")
            .send(Duration::from_secs(5), 1024)
            .await
            .unwrap_err();
        assert!(matches!(e, CallError::Address { .. }), "{e:?}");
    }
}
