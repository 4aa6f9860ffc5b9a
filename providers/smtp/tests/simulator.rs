#![allow(clippy::unwrap_used)]
//! The SMTP sink itself, spoken to by hand, and adapter -> sink round trips.

use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use weft_provider::{Channel, OutboundMessage, Provider};
use weft_smtp::simulator::Stage;
use weft_smtp::{SinkConfig, SmtpSink};

/// A hand-driven SMTP client.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn connect(sink: &SmtpSink) -> Client {
        let (r, w) = TcpStream::connect(sink.addr()).await.unwrap().into_split();
        Client {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    async fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
    }

    /// Reads one (possibly multi-line) reply; `None` on EOF.
    async fn reply(&mut self) -> Option<(u16, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
                .await
                .unwrap()
                .ok()?;
            if n == 0 {
                return None;
            }
            let code: u16 = line.get(..3)?.parse().ok()?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            text.push_str(line.get(4..).unwrap_or_default().trim_end());
            if !more {
                return Some((code, text));
            }
            text.push('\n');
        }
    }

    async fn expect(&mut self, code: u16) -> String {
        let (got, text) = self
            .reply()
            .await
            .unwrap_or_else(|| panic!("EOF while expecting {code}"));
        assert_eq!(got, code, "reply text: {text}");
        text
    }

    async fn cmd(&mut self, line: &str, code: u16) -> String {
        self.send(line).await;
        self.expect(code).await
    }

    async fn hello(sink: &SmtpSink) -> Client {
        let mut c = Client::connect(sink).await;
        c.expect(220).await;
        c.cmd("EHLO client.test", 250).await;
        c
    }
}

async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_session_by_hand() {
    let sink = SmtpSink::start(SinkConfig::default()).await.unwrap();
    assert!(sink.base_url().starts_with("smtp://127.0.0.1:"));
    let mut c = Client::connect(&sink).await;
    c.expect(220).await;
    c.cmd("MAIL FROM:<a@shop.example>", 503).await; // EHLO first
    let features = c.cmd("EHLO client.test", 250).await;
    for f in [
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
        "SIZE ",
    ] {
        assert!(features.contains(f), "{f} not advertised: {features}");
    }
    assert!(!features.contains("STARTTLS"));
    c.cmd("DATA", 503).await; // RCPT first
    c.cmd("MAIL FROM:<a@shop.example>", 250).await;
    c.cmd("MAIL FROM:<a@shop.example>", 503).await; // nested
    c.cmd("RCPT TO:<first@example.com>", 250).await;
    c.cmd("RSET", 250).await;
    c.cmd("NOOP", 250).await;
    c.cmd("RCPT TO:<x@example.com>", 503).await; // the transaction was reset
    c.cmd("MAIL FROM:<a@shop.example> BODY=8BITMIME", 250).await;
    c.cmd("RCPT TO:<bob@example.com>", 250).await;
    c.cmd("DATA", 354).await;
    for line in [
        "Subject: hi",
        "X-Weft-Message-Id: msg_raw",
        "",
        "..leading dot",
        "...",
        "last",
    ] {
        c.send(line).await;
    }
    let queued = c.cmd(".", 250).await;
    assert!(queued.starts_with("2.0.0 Ok: queued as "), "{queued}");
    c.cmd("BOGUS", 500).await;
    c.cmd("QUIT", 221).await;
    assert!(c.reply().await.is_none(), "QUIT closes the session");

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.body, ".leading dot\r\n..\r\nlast\r\n");
    assert_eq!(m.rcpt_to, vec!["bob@example.com".to_string()]);
    assert_eq!(m.hello.as_deref(), Some("client.test"));
    assert!(queued.ends_with(&m.queue_id), "{queued} vs {}", m.queue_id);
    let rec = sink.recorder().find_by_message("msg_raw");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].provider_id, m.queue_id);
    assert_eq!(rec[0].raw["subject"], "hi");
    eventually("the session to end", || sink.open_sessions() == 0).await;
}

#[tokio::test]
async fn auth_by_hand() {
    let sink = SmtpSink::start(SinkConfig::default().with_credentials("u1", "p1"))
        .await
        .unwrap();
    let mut c = Client::hello(&sink).await;
    c.cmd("MAIL FROM:<a@b.example>", 530).await;
    // AUTH LOGIN with challenges: "Username:" / "Password:" in base64.
    assert_eq!(c.cmd("AUTH LOGIN", 334).await.trim(), "VXNlcm5hbWU6");
    assert_eq!(c.cmd("dTE=", 334).await.trim(), "UGFzc3dvcmQ6");
    c.cmd("cDE=", 235).await;
    c.cmd("AUTH PLAIN AHUxAHAx", 503).await; // already authenticated
    c.cmd("MAIL FROM:<a@b.example>", 250).await;

    // Wrong pairs: 535 each, the third closes the session.
    let mut c = Client::hello(&sink).await;
    c.cmd("AUTH PLAIN AHUxAHdyb25n", 535).await; // \0u1\0wrong
    c.send("AUTH PLAIN").await;
    c.expect(334).await;
    c.cmd("AHUxAHdyb25n", 535).await;
    c.cmd("AUTH PLAIN not-base64!", 501).await;
    c.cmd("AUTH CRAM-MD5", 504).await;
    c.cmd("AUTH PLAIN AHUxAHdyb25n", 535).await;
    assert!(
        c.reply().await.is_none(),
        "three failures close the session"
    );
}

#[tokio::test]
async fn bounds_hold() {
    let config = SinkConfig {
        max_line: 100,
        max_message_bytes: 400,
        max_commands: 8,
        idle_timeout: Duration::from_millis(300),
        ..SinkConfig::default()
    };
    let sink = SmtpSink::start(config).await.unwrap();

    // An overlong command line is refused and the session goes on.
    let mut c = Client::hello(&sink).await;
    c.cmd(&format!("NOOP {}", "x".repeat(500)), 500).await;
    c.cmd("NOOP", 250).await;
    // A declared size over the limit, then a message over the limit.
    c.cmd("MAIL FROM:<a@b.example> SIZE=5000", 552).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<bob@example.com>", 250).await;
    c.cmd("DATA", 354).await;
    for _ in 0..10 {
        c.send(&"y".repeat(60)).await;
    }
    c.cmd(".", 552).await;
    c.cmd("NOOP", 250).await;
    // The command budget (8) is spent: 421 and the session closes.
    assert!(c.expect(421).await.contains("Too many commands"));
    assert!(c.reply().await.is_none());
    assert!(sink.mails().is_empty());

    // A silent client is closed after the idle timeout.
    let mut c = Client::hello(&sink).await;
    let started = std::time::Instant::now();
    c.expect(421).await;
    assert!(c.reply().await.is_none());
    assert!(started.elapsed() < Duration::from_secs(3));

    // EOF ends a session without QUIT.
    let c = Client::hello(&sink).await;
    drop(c);
    eventually("every session to end", || sink.open_sessions() == 0).await;
}

#[tokio::test]
async fn too_many_sessions_get_421() {
    let sink = SmtpSink::start(SinkConfig {
        max_sessions: 1,
        ..SinkConfig::default()
    })
    .await
    .unwrap();
    let _first = Client::hello(&sink).await;
    let mut second = Client::connect(&sink).await;
    second.expect(421).await;
    assert!(second.reply().await.is_none());
}

#[tokio::test]
async fn faults_switch_at_run_time() {
    let sink = SmtpSink::start(SinkConfig::default()).await.unwrap();
    sink.faults().set_greeting_reply(Some(421));
    let mut c = Client::connect(&sink).await;
    c.expect(421).await;
    sink.faults().reset();
    sink.faults().set_drop_at(Some(Stage::Rcpt));
    let mut c = Client::hello(&sink).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.send("RCPT TO:<bob@example.com>").await;
    assert!(c.reply().await.is_none(), "dropped at RCPT");
    sink.faults().reset();
    let mut c = Client::hello(&sink).await;
    c.cmd("MAIL FROM:<a@b.example>", 250).await;
    c.cmd("RCPT TO:<reject@example.com>", 550).await;
    c.cmd("RCPT TO:<ok@example.com>", 250).await;
}

fn email(i: usize) -> OutboundMessage {
    OutboundMessage {
        message_id: format!("msg_{i:03}"),
        attempt_id: format!("att_{i:03}"),
        channel: Channel::Email,
        to: format!("user{i}@example.com"),
        from: Some("support@shop.example".into()),
        body: Some(format!("Message number {i}")),
        subject: Some(format!("Subject {i}")),
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: String::new(),
    }
}

#[tokio::test]
async fn adapter_round_trip_concurrently() {
    let sink = SmtpSink::start(SinkConfig::default().with_credentials("gw", "gw-pass-1234"))
        .await
        .unwrap();
    let provider: Arc<dyn Provider> = weft_smtp::build(&sink.connection_spec("mail")).unwrap();
    let sends = (0..20).map(|i| {
        let p = provider.clone();
        tokio::spawn(async move { p.send(&email(i)).await })
    });
    let mut ids = Vec::new();
    for s in sends {
        let receipt = s.await.unwrap().unwrap();
        ids.extend(receipt.provider_ids);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20, "one distinct provider id per message");
    assert_eq!(sink.recorder().count(), 20);
    assert!(sink.recorder().duplicates().is_empty());
    let mails = sink.mails();
    for m in &mails {
        let weft_id = m.weft_message_id().unwrap();
        let i: usize = weft_id.trim_start_matches("msg_").parse().unwrap();
        assert_eq!(
            m.message_id(),
            Some(format!("{weft_id}@shop.example").as_str())
        );
        assert_eq!(m.subject(), Some(format!("Subject {i}").as_str()));
        assert_eq!(m.rcpt_to, vec![format!("user{i}@example.com")]);
        assert_eq!(m.auth_user.as_deref(), Some("gw"));
    }
    let mut queue_ids: Vec<_> = mails.iter().map(|m| m.queue_id.clone()).collect();
    queue_ids.sort();
    queue_ids.dedup();
    assert_eq!(queue_ids.len(), 20);
    eventually("every session to end", || sink.open_sessions() == 0).await;
}

#[tokio::test]
async fn health_checks_the_relay() {
    let sink = SmtpSink::start(SinkConfig::default()).await.unwrap();
    let provider = weft_smtp::build(&sink.connection_spec("mail")).unwrap();
    provider.health().await.unwrap();
    sink.faults().set_greeting_reply(Some(421));
    let e = provider.health().await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(sink.mails().is_empty());
}

#[tokio::test]
async fn a_dropped_sink_stops_listening() {
    let sink = SmtpSink::start(SinkConfig::default()).await.unwrap();
    let addr = sink.addr();
    let _open = Client::hello(&sink).await;
    drop(sink);
    let mut refused = false;
    for _ in 0..50 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the listener outlived the sink");
}
