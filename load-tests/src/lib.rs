//! weft's load generator.
//!
//! - [`cli`]: the `weft-load` command line (`baseline`, `accept`, `e2e`, `inbound`, `report`).
//! - [`client`]: one persistent HTTP/1.1 keep-alive connection per worker (hyper 1), so
//!   workers never contend on a shared pool.
//! - [`engine`]: the worker loop shared by every mode: send `POST /v1/messages`, time it into
//!   a per-worker HDR histogram, count statuses; merged at the end.
//! - [`inbound`]: signed Twilio inbound-SMS webhooks (`weft-load inbound`).
//! - [`baseline`]: a trivial in-process server answering 202, to measure the generator's own
//!   ceiling on this machine.
//! - [`e2e`]: send N messages, then poll `GET /metrics` until all are delivered.
//! - [`prom`]: a small Prometheus text-format parser.
//! - [`rss`]: samples a process's `VmRSS` / `VmHWM` from `/proc/PID/status`.
//! - [`report`]: the human table (stderr), the JSON summary line (stdout) and the markdown
//!   table built from saved JSON lines.

pub mod baseline;
pub mod cli;
pub mod client;
pub mod e2e;
pub mod engine;
pub mod inbound;
pub mod prom;
pub mod report;
pub mod rss;
