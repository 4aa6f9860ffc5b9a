//! A minimal HTTP/1.1 client: one persistent keep-alive connection per worker (hyper 1's
//! connection-level API). No shared pool means no lock between workers, which is what lets a
//! 2-core box push tens of thousands of requests per second through it.

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where requests go: `http://host:port[/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
    /// `host:port` to connect to (port filled in).
    pub connect_addr: String,
    /// The URL's path without a trailing `/` (usually empty).
    pub base_path: String,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url
            .trim()
            .parse()
            .with_context(|| format!("not a URL: {url}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("only http:// URLs are supported (got {other}://)"),
            None => bail!("the URL needs a scheme: http://host:port (got {url})"),
        }
        let Some(auth) = uri.authority() else {
            bail!("the URL needs a host: {url}")
        };
        let host = auth.host();
        let port = auth.port_u16().unwrap_or(80);
        let connect_addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Target {
            authority: auth.as_str().to_string(),
            connect_addr,
            base_path: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The request path for `path` (which starts with `/`).
    pub fn path(&self, path: &str) -> String {
        format!("{}{}", self.base_path, path)
    }

    pub fn host_header(&self) -> anyhow::Result<HeaderValue> {
        HeaderValue::from_str(&self.authority).context("the URL's host is not a valid header")
    }
}

/// One keep-alive connection.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn connect(target: &Target) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(&target.connect_addr)
            .await
            .with_context(|| format!("connect {}", target.connect_addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the peer closes; errors surface on send.
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("connection closed")?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}

/// A one-off GET over a fresh connection (metrics polls, simulator stats), with a timeout.
pub async fn get(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let fut = async {
        let mut conn = Conn::connect(target).await?;
        let req = Request::builder()
            .method(Method::GET)
            .uri(target.path(path))
            .header(header::HOST, target.host_header()?)
            .body(Full::new(Bytes::new()))?;
        conn.send(req).await
    };
    tokio::time::timeout(timeout, fut)
        .await
        .with_context(|| format!("GET {path}: no answer within {timeout:?}"))?
}

/// A reusable GET client that keeps its connection between calls and reconnects on error.
pub struct Getter {
    target: Target,
    conn: Option<Conn>,
    timeout: Duration,
}

impl Getter {
    pub fn new(target: Target, timeout: Duration) -> Getter {
        Getter {
            target,
            conn: None,
            timeout,
        }
    }

    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let target = &self.target;
        let slot = &mut self.conn;
        let fut = async {
            if slot.is_none() {
                *slot = Some(Conn::connect(target).await?);
            }
            let req = Request::builder()
                .method(Method::GET)
                .uri(target.path(path))
                .header(header::HOST, target.host_header()?)
                .body(Full::new(Bytes::new()))?;
            match slot.as_mut() {
                Some(conn) => conn.send(req).await,
                None => bail!("not connected"),
            }
        };
        let res = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "GET {path}: no answer within {:?}",
                self.timeout
            )),
        };
        if res.is_err() {
            self.conn = None;
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("http://127.0.0.1:8080").expect("plain");
        assert_eq!(t.connect_addr, "127.0.0.1:8080");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path("/v1/messages"), "/v1/messages");

        let t = Target::parse("http://localhost/weft/").expect("base path");
        assert_eq!(t.connect_addr, "localhost:80");
        assert_eq!(t.path("/metrics"), "/weft/metrics");

        let t = Target::parse("http://[::1]:9000").expect("ipv6");
        assert_eq!(t.connect_addr, "[::1]:9000");

        assert!(Target::parse("https://example.com").is_err());
        assert!(Target::parse("127.0.0.1:8080").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
