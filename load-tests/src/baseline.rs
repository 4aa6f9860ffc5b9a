//! The trivial server `baseline` hammers: `POST /v1/messages` reads the body and answers 202
//! with a small JSON, nothing else. It runs on its own tokio runtime (own threads), as weft
//! would in its own process, so the number measured is what the generator can push through
//! HTTP on this machine.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use std::net::SocketAddr;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Name of the trivial server's threads (so their CPU time can be told apart).
pub const SERVER_THREAD: &str = "baseline-server";

const ANSWER: &str = r#"{"id":"msg_01BASELINE0000000000000000","conversation_id":"conv_01BASELINE000000000000000","status":"accepted","segments":1}"#;

async fn accept(body: Bytes) -> impl IntoResponse {
    // Touch the body so it is really read.
    let _ = body.len();
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        ANSWER,
    )
}

pub fn router() -> Router {
    Router::new().route("/v1/messages", post(accept))
}

/// A running trivial server; [`TrivialServer::stop`] ends it.
pub struct TrivialServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TrivialServer {
    /// Binds 127.0.0.1:0 and serves on a runtime of `threads` worker threads.
    pub fn start(threads: usize) -> anyhow::Result<TrivialServer> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(SERVER_THREAD.into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("baseline server: {e}");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, router()).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = serve.await {
                        eprintln!("baseline server: {e}");
                    }
                });
                rt.shutdown_background();
            })?;
        Ok(TrivialServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TrivialServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
