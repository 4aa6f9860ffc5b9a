//! Plumbing every provider simulator shares.
//!
//! A simulator is an in-process HTTP server speaking one provider's API shape. It answers
//! sends (or injects faults: latency, 5xx, 429, timeouts), records what it received so tests
//! can count deliveries per weft message id, and calls weft back with signed status callbacks
//! (optionally duplicated, out of order, unsigned or forged).

mod callback;
mod faults;
mod recorder;

pub use callback::{CallbackBehaviour, Callbacker, OutgoingCallback};
pub use faults::{Fault, Faults};
pub use recorder::{Received, Recorder};

use std::net::SocketAddr;
use tokio::task::JoinHandle;

/// A running simulator's address; the server stops when this is dropped.
pub struct Running {
    pub addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl Running {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Serves `router` on 127.0.0.1 at `port` (0 = any free port).
pub async fn serve(router: axum::Router, port: u16) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::warn!(%e, "Simulator server stopped.");
        }
    });
    Ok(Running { addr, handle })
}
