//! The SMTP twin of testkit's HTTP `run_send_cases`: per case a fresh sink with the case's
//! settings and faults, one send, the classified outcome, the mail as the sink recorded it, and
//! no credential in anything the adapter logged or returned.

use weft_provider::{ConnectionSpec, DeliveryStatus, OutboundMessage};
use weft_smtp::simulator::ReceivedMail;
use weft_smtp::{SinkConfig, SmtpFaults, SmtpSink};
use weft_testkit::{LogCapture, SendExpect};

/// What the sink must hold after the send.
pub enum Mail {
    /// Nothing accepted.
    None,
    /// Exactly one mail, checked field by field.
    One(Vec<Check>),
}

pub enum Check {
    Header(&'static str, &'static str),
    /// The decoded body, compared without the final CRLF the wire form adds.
    Body(String),
    AuthUser(Option<&'static str>),
    Envelope(&'static str, &'static str),
    RawIsAscii,
    RawLacks(&'static str),
}

pub struct Case {
    name: &'static str,
    sink: SinkConfig,
    faults: fn(&SmtpFaults),
    spec: fn(&mut ConnectionSpec),
    message: OutboundMessage,
    expect: SendExpect,
    mail: Mail,
    /// Expected TCP connections to the sink (`Some(0)`: refused before connecting).
    connections: Option<u64>,
    /// Point the adapter at a port nobody listens on.
    refused: bool,
}

pub fn case(name: &'static str, message: OutboundMessage, expect: SendExpect) -> Case {
    Case {
        name,
        sink: SinkConfig::default(),
        faults: |_| {},
        spec: |_| {},
        message,
        expect,
        mail: Mail::None,
        connections: None,
        refused: false,
    }
}

impl Case {
    pub fn sink(mut self, s: SinkConfig) -> Self {
        self.sink = s;
        self
    }
    pub fn faults(mut self, f: fn(&SmtpFaults)) -> Self {
        self.faults = f;
        self
    }
    pub fn spec(mut self, f: fn(&mut ConnectionSpec)) -> Self {
        self.spec = f;
        self
    }
    pub fn mail(mut self, checks: Vec<Check>) -> Self {
        self.mail = Mail::One(checks);
        self
    }
    pub fn connections(mut self, n: u64) -> Self {
        self.connections = Some(n);
        self
    }
    pub fn refused(mut self) -> Self {
        self.refused = true;
        self
    }
}

fn check_mail(name: &str, mail: &ReceivedMail, checks: &[Check]) {
    for c in checks {
        match c {
            Check::Header(h, want) => assert_eq!(
                mail.header(h),
                Some(*want),
                "{name}: header {h}\n{}",
                mail.raw
            ),
            Check::Body(want) => {
                assert_eq!(
                    mail.body.strip_suffix("\r\n").unwrap_or(&mail.body),
                    want.as_str(),
                    "{name}: body\n{}",
                    mail.raw
                )
            }
            Check::AuthUser(want) => {
                assert_eq!(mail.auth_user.as_deref(), *want, "{name}: auth user")
            }
            Check::Envelope(from, to) => {
                assert_eq!(mail.mail_from, *from, "{name}: MAIL FROM");
                assert_eq!(mail.rcpt_to, vec![to.to_string()], "{name}: RCPT TO");
            }
            Check::RawIsAscii => assert!(
                mail.raw.is_ascii(),
                "{name}: raw mail is not 7-bit:\n{}",
                mail.raw
            ),
            Check::RawLacks(s) => assert!(!mail.raw.contains(s), "{name}: raw mail holds {s:?}"),
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub async fn run(case: Case) {
    let name = case.name;
    let sink = SmtpSink::start(case.sink.clone()).await.unwrap();
    (case.faults)(sink.faults());
    let mut spec = sink.connection_spec("mail");
    (case.spec)(&mut spec);
    if case.refused {
        spec.base_url =
            Some(url::Url::parse(&format!("smtp://127.0.0.1:{}", free_port())).unwrap());
    }
    let secrets: Vec<String> = spec
        .credentials
        .keys()
        .filter_map(|k| spec.credentials.expose(k))
        .map(String::from)
        .collect();
    let provider = weft_smtp::build(&spec).unwrap_or_else(|e| panic!("{name}: build failed: {e}"));

    let logs = LogCapture::default();
    let result = {
        let _guard = logs.install();
        provider.send(&case.message).await
    };
    logs.assert_no_secrets(name, &secrets, &format!("{result:?}"));

    match (&case.expect, &result) {
        (
            SendExpect::Ok {
                provider_ids,
                status,
            },
            Ok(r),
        ) => {
            assert_eq!(&r.provider_ids, provider_ids, "{name}: provider ids");
            assert_eq!(&r.status, status, "{name}: status");
            assert_eq!(*status, DeliveryStatus::Queued);
        }
        (
            SendExpect::Err {
                retryable,
                code,
                provider_code,
                reason,
                ..
            },
            Err(e),
        ) => {
            assert_eq!(e.is_retryable(), *retryable, "{name}: retryable ({e})");
            assert_eq!(e.code(), *code, "{name}: code ({e})");
            assert_eq!(
                e.provider_code(),
                provider_code.as_deref(),
                "{name}: provider code ({e})"
            );
            if let Some(r) = reason {
                assert_eq!(e.reason(), *r, "{name}: reason ({e})");
            }
            assert_eq!(
                e.is_ambiguous(),
                *code == "timeout",
                "{name}: only a timeout is ambiguous"
            );
        }
        (want, got) => panic!("{name}: expected {want:?}, got {got:?}"),
    }

    let mails = sink.mails();
    match &case.mail {
        Mail::None if case.expect_is_ok() => {
            assert_eq!(mails.len(), 1, "{name}: expected one mail")
        }
        Mail::None => assert!(
            mails.is_empty(),
            "{name}: a failed send left a mail: {mails:?}"
        ),
        Mail::One(checks) => {
            assert_eq!(mails.len(), 1, "{name}: expected exactly one mail");
            check_mail(name, &mails[0], checks);
            let id = &case.message.message_id;
            assert_eq!(
                sink.recorder().find_by_message(id).len(),
                1,
                "{name}: recorder by weft id"
            );
        }
    }
    if let Some(n) = case.connections {
        assert_eq!(sink.connections(), n, "{name}: connections to the sink");
    }
}

impl Case {
    fn expect_is_ok(&self) -> bool {
        matches!(self.expect, SendExpect::Ok { .. })
    }
}
