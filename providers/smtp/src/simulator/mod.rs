//! A local SMTP sink (feature `simulator`): a small ESMTP server on 127.0.0.1 that records every
//! mail it accepts and injects SMTP faults. This crate's tests and the gateway's integration
//! tests start it themselves:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use weft_smtp::{SinkConfig, SmtpSink};
//! let sink = SmtpSink::start(SinkConfig::default()).await?;
//! let spec = sink.connection_spec("mail"); // base_url smtp://127.0.0.1:PORT, tls = "none"
//! sink.faults().set_rcpt_reply(Some(451));  // every RCPT TO answers 451 from now on
//! # let _ = spec; Ok(()) }
//! ```
//!
//! It speaks: the `220` greeting, `EHLO` (advertising `8BITMIME`, `SMTPUTF8` unless switched off,
//! `ENHANCEDSTATUSCODES`, `SIZE`, `AUTH PLAIN LOGIN`) / `HELO`, `AUTH PLAIN` and `AUTH LOGIN`
//! (checked against [`SinkConfig::credentials`] when set; a wrong pair gets `535`, a `MAIL`
//! before `AUTH` gets `530`), `MAIL FROM`, `RCPT TO`, `DATA` with dot-unstuffing, `RSET`,
//! `NOOP`, `VRFY`, `HELP`, `QUIT`. `STARTTLS` is neither advertised nor possible (a client that
//! requires TLS must fail). An accepted mail gets `250 2.0.0 Ok: queued as <id>`.
//!
//! Special recipients (by local part, any domain): `reject@` -> `550 5.1.1` at `RCPT`,
//! `busy@` -> `451 4.3.0` at `RCPT`, `throttle@` -> `421 4.7.0` at `RCPT` (and the session
//! closes), `spam@` -> `554 5.7.1` after the data.
//!
//! Bounds: command lines of [`SinkConfig::max_line`] bytes, messages of
//! [`SinkConfig::max_message_bytes`], [`SinkConfig::max_sessions`] at once, a limit of commands
//! per session and an idle timeout; each session ends on `QUIT`, EOF, or a bound.

mod mail;
mod session;

pub use mail::ReceivedMail;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use weft_provider::{ConnectionSpec, ProviderKind};
use weft_simkit::{Faults, Recorder};

/// Recipient local parts with a fixed answer.
pub const REJECT_LOCAL_PART: &str = "reject";
pub const BUSY_LOCAL_PART: &str = "busy";
pub const THROTTLE_LOCAL_PART: &str = "throttle";
pub const SPAM_LOCAL_PART: &str = "spam";

/// How the sink is set up; fixed for its life (faults change at run time, see [`SmtpFaults`]).
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Port on 127.0.0.1; 0 takes any free port.
    pub port: u16,
    /// When set, every mail needs `AUTH` with exactly this (username, password).
    pub credentials: Option<(String, String)>,
    /// The AUTH mechanisms advertised in `EHLO` (`PLAIN`, `LOGIN`).
    pub auth_mechanisms: Vec<String>,
    /// Advertise `SMTPUTF8` (non-ASCII addresses); off, a client must refuse such a mail.
    pub smtputf8: bool,
    /// The name in the greeting and `EHLO` answer.
    pub hostname: String,
    /// Longest command or data line accepted, in bytes (RFC 5321 asks for at least 1000).
    pub max_line: usize,
    /// Largest message accepted (also advertised as `SIZE`).
    pub max_message_bytes: usize,
    /// Sessions served at once; more get `421` and are closed.
    pub max_sessions: usize,
    /// Commands one session may send before it is closed with `421`.
    pub max_commands: usize,
    /// A session silent this long is closed with `421`.
    pub idle_timeout: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            port: 0,
            credentials: None,
            auth_mechanisms: vec!["PLAIN".into(), "LOGIN".into()],
            smtputf8: true,
            hostname: "sink.weft.test".into(),
            max_line: 4096,
            max_message_bytes: 10 * 1024 * 1024,
            max_sessions: 512,
            max_commands: 1000,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl SinkConfig {
    /// Requires `AUTH` with this pair.
    pub fn with_credentials(mut self, user: &str, pass: &str) -> Self {
        self.credentials = Some((user.to_string(), pass.to_string()));
        self
    }
}

/// Where in a session a dropped connection happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    /// Accept, then close without a greeting.
    Greeting = 1,
    /// On `EHLO` / `HELO`.
    Hello = 2,
    /// On `MAIL FROM`.
    Mail = 3,
    /// On `RCPT TO`.
    Rcpt = 4,
    /// On `DATA`, before `354`.
    Data = 5,
    /// After the whole message arrived, before the final answer.
    EndOfData = 6,
}

impl Stage {
    fn from_u8(v: u8) -> Option<Stage> {
        Some(match v {
            1 => Stage::Greeting,
            2 => Stage::Hello,
            3 => Stage::Mail,
            4 => Stage::Rcpt,
            5 => Stage::Data,
            6 => Stage::EndOfData,
            _ => return None,
        })
    }
}

/// Fault switches, changeable while the sink runs.
///
/// [`SmtpFaults::common`] holds the shared simkit rates: `set_error_rate` answers `451` after the
/// data, `set_throttle_rate` `421` (and closes), `set_timeout_rate` never answers the data,
/// `set_outage` answers `451` to every mail; its latency delays every reply.
#[derive(Debug, Default)]
pub struct SmtpFaults {
    common: Faults,
    greeting: AtomicU16,
    rcpt: AtomicU16,
    data: AtomicU16,
    drop_at: AtomicU8,
}

fn code_or_none(v: u16) -> Option<u16> {
    (v != 0).then_some(v)
}

impl SmtpFaults {
    /// The shared rates and latency.
    pub fn common(&self) -> &Faults {
        &self.common
    }
    /// Delay before every reply (slow relay; longer than the client's timeout makes a timeout).
    pub fn set_latency(&self, d: Duration) {
        self.common.set_latency(d);
    }
    /// Answer the connection with this code instead of `220` (e.g. 421, 554), then close.
    pub fn set_greeting_reply(&self, code: Option<u16>) {
        self.greeting.store(code.unwrap_or(0), Ordering::Relaxed);
    }
    /// Answer every `RCPT TO` with this code (e.g. 450, 451, 452, 550, 553; 421 also closes).
    pub fn set_rcpt_reply(&self, code: Option<u16>) {
        self.rcpt.store(code.unwrap_or(0), Ordering::Relaxed);
    }
    /// Answer the end of the data with this code (e.g. 451, 552, 554) instead of `250`.
    pub fn set_data_reply(&self, code: Option<u16>) {
        self.data.store(code.unwrap_or(0), Ordering::Relaxed);
    }
    /// Close the connection without an answer at this point.
    pub fn set_drop_at(&self, stage: Option<Stage>) {
        self.drop_at
            .store(stage.map(|s| s as u8).unwrap_or(0), Ordering::Relaxed);
    }
    /// Back to a well-behaved sink.
    pub fn reset(&self) {
        self.set_greeting_reply(None);
        self.set_rcpt_reply(None);
        self.set_data_reply(None);
        self.set_drop_at(None);
        self.common.set_latency(Duration::ZERO);
        self.common.set_error_rate(0.0);
        self.common.set_throttle_rate(0.0, 0);
        self.common.set_timeout_rate(0.0);
        self.common.set_outage(false);
    }

    pub(crate) fn greeting(&self) -> Option<u16> {
        code_or_none(self.greeting.load(Ordering::Relaxed))
    }
    pub(crate) fn rcpt(&self) -> Option<u16> {
        code_or_none(self.rcpt.load(Ordering::Relaxed))
    }
    pub(crate) fn data(&self) -> Option<u16> {
        code_or_none(self.data.load(Ordering::Relaxed))
    }
    pub(crate) fn drops_at(&self, stage: Stage) -> bool {
        Stage::from_u8(self.drop_at.load(Ordering::Relaxed)) == Some(stage)
    }
}

/// State shared by the accept loop and every session.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SinkConfig,
    pub faults: SmtpFaults,
    pub recorder: Recorder,
    pub mails: Mutex<Vec<ReceivedMail>>,
    pub connections: AtomicU64,
    pub active: AtomicUsize,
    pub queue_seq: AtomicU64,
    pub queue_prefix: u16,
}

impl Shared {
    pub(crate) fn next_queue_id(&self) -> String {
        let n = self.queue_seq.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{:04X}{:08X}", self.queue_prefix, n)
    }
}

/// A running sink; it stops (with every open session) when dropped.
pub struct SmtpSink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    handle: JoinHandle<()>,
}

/// The name every provider's simulator goes by.
pub type Simulator = SmtpSink;

impl SmtpSink {
    /// Binds 127.0.0.1 and starts serving.
    pub async fn start(config: SinkConfig) -> std::io::Result<SmtpSink> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            faults: SmtpFaults::default(),
            recorder: Recorder::default(),
            mails: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            queue_seq: AtomicU64::new(0),
            queue_prefix: addr.port(),
        });
        let handle = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(SmtpSink {
            addr,
            shared,
            handle,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    pub fn faults(&self) -> &SmtpFaults {
        &self.shared.faults
    }

    /// Every accepted mail, in arrival order, with envelope, raw data and decoded headers.
    pub fn mails(&self) -> Vec<ReceivedMail> {
        self.shared
            .mails
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// TCP connections accepted so far (a send refused before connecting adds none).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }

    /// Sessions open right now (each ends on QUIT, EOF, idle timeout or a bound).
    pub fn open_sessions(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// A connection spec pointing at this sink: `base_url`, `tls = "none"`, the sink's
    /// credentials if it requires some, channel email, a 5 s timeout.
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::Smtp);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.channels = vec![weft_provider::Channel::Email];
        spec.settings
            .insert("tls".into(), serde_json::Value::String("none".into()));
        if let Some((user, pass)) = &self.shared.config.credentials {
            spec.credentials.insert("username", user.clone());
            spec.credentials.insert("password", pass.clone());
        }
        spec.request_timeout = Duration::from_secs(5);
        spec
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Sessions live in this set: aborting the loop drops it, which aborts them all.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    sessions.spawn(session::run(stream, shared.clone()));
                }
                Err(e) => {
                    tracing::warn!(%e, "SMTP sink could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}
