//! One SMTP session of the sink: greeting, commands, data; every read bounded in size and time.

use super::mail::ReceivedMail;
use super::{
    Shared, Stage, BUSY_LOCAL_PART, REJECT_LOCAL_PART, SPAM_LOCAL_PART, THROTTLE_LOCAL_PART,
};
use base64::Engine as _;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use weft_simkit::{Fault, Received};

/// No session lives longer than this, whatever the client does.
const MAX_SESSION: Duration = Duration::from_secs(600);
const MAX_RECIPIENTS: usize = 100;
const MAX_AUTH_FAILURES: u32 = 3;

enum Line {
    Text(String),
    TooLong,
    Eof,
    Idle,
}

#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

struct Session {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    shared: Arc<Shared>,
    hello: Option<String>,
    auth_user: Option<String>,
    auth_failures: u32,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

/// Keeps the count of open sessions right however a session ends.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) async fn run(stream: TcpStream, shared: Arc<Shared>) {
    let open = shared.active.fetch_add(1, Ordering::Relaxed) + 1;
    let _active = Active(shared.clone());
    let (r, w) = stream.into_split();
    let mut s = Session {
        reader: BufReader::new(r),
        writer: w,
        shared,
        hello: None,
        auth_user: None,
        auth_failures: 0,
        mail_from: None,
        rcpt_to: Vec::new(),
    };
    // Errors here are the client going away: nothing to report.
    let _ = tokio::time::timeout(MAX_SESSION, s.serve(open)).await;
    let _ = s.writer.shutdown().await;
}

/// The sink's text for a code it is told to answer.
fn text_for(code: u16) -> &'static str {
    match code {
        421 => "4.7.0 Service not available, closing transmission channel",
        450 => "4.2.1 Mailbox busy, try again later",
        451 => "4.3.0 Local error in processing",
        452 => "4.3.1 Insufficient system storage",
        530 => "5.7.0 Authentication required",
        535 => "5.7.8 Authentication credentials invalid",
        550 => "5.1.1 Mailbox unavailable",
        551 => "5.1.6 User not local",
        552 => "5.3.4 Message size exceeds fixed limit",
        553 => "5.7.1 Sender address rejected: not owned by user",
        554 => "5.7.1 Message rejected as spam",
        c if c >= 500 => "5.0.0 Fault injected",
        c if c >= 400 => "4.0.0 Fault injected",
        _ => "2.0.0 Ok",
    }
}

/// The address inside `<…>` after `FROM:` / `TO:`, and the rest (ESMTP parameters).
fn path_arg<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

fn local_part(addr: &str) -> String {
    addr.split('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

impl Session {
    async fn serve(&mut self, open: usize) -> io::Result<()> {
        let shared = self.shared.clone();
        let faults = &shared.faults;
        if faults.drops_at(Stage::Greeting) {
            return Ok(());
        }
        if open > self.shared.config.max_sessions {
            return self
                .reply(421, &["4.3.2 Too many connections, try again later"])
                .await;
        }
        if let Some(code) = faults.greeting() {
            return self.reply(code, &[text_for(code)]).await;
        }
        let greeting = format!("{} ESMTP weft sink", self.shared.config.hostname);
        self.reply(220, &[&greeting]).await?;

        for _ in 0..self.shared.config.max_commands {
            let line = match self.read_line().await? {
                Line::Text(l) => l,
                Line::TooLong => {
                    self.reply(500, &["5.5.6 Line too long"]).await?;
                    continue;
                }
                Line::Eof => return Ok(()),
                Line::Idle => {
                    return self
                        .reply(421, &["4.4.2 Idle too long, closing connection"])
                        .await
                }
            };
            let (verb, arg) = match line.split_once(' ') {
                Some((v, a)) => (v.to_ascii_uppercase(), a.trim().to_string()),
                None => (line.trim().to_ascii_uppercase(), String::new()),
            };
            if self.command(&verb, &arg).await? == Flow::Close {
                return Ok(());
            }
        }
        self.reply(421, &["4.7.0 Too many commands, closing connection"])
            .await
    }

    async fn command(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        match verb {
            "EHLO" | "HELO" => self.hello(verb, arg).await,
            "AUTH" => self.auth(arg).await,
            "MAIL" => self.mail(arg).await,
            "RCPT" => self.rcpt(arg).await,
            "DATA" => self.data().await,
            "RSET" => {
                self.reset();
                self.ok(250, "2.0.0 Ok").await
            }
            "NOOP" => self.ok(250, "2.0.0 Ok").await,
            "VRFY" => {
                self.ok(252, "2.5.2 Cannot VRFY user, but will accept the message")
                    .await
            }
            "HELP" => self.ok(214, "2.0.0 See RFC 5321").await,
            "STARTTLS" => self.ok(454, "4.7.0 TLS not available").await,
            "QUIT" => {
                self.reply(221, &["2.0.0 Bye"]).await?;
                Ok(Flow::Close)
            }
            _ => self.ok(500, "5.5.2 Command not recognized").await,
        }
    }

    async fn ok(&mut self, code: u16, text: &str) -> io::Result<Flow> {
        self.reply(code, &[text]).await?;
        Ok(Flow::Continue)
    }

    /// Answers `code` with the canned text; a `421` also closes the session.
    async fn fault(&mut self, code: u16) -> io::Result<Flow> {
        self.reply(code, &[text_for(code)]).await?;
        Ok(if code == 421 {
            Flow::Close
        } else {
            Flow::Continue
        })
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    async fn hello(&mut self, verb: &str, arg: &str) -> io::Result<Flow> {
        if self.shared.faults.drops_at(Stage::Hello) {
            return Ok(Flow::Close);
        }
        if arg.is_empty() {
            return self.ok(501, "5.5.4 Syntax: EHLO hostname").await;
        }
        self.hello = Some(arg.to_string());
        self.reset();
        let host = self.shared.config.hostname.clone();
        if verb == "HELO" {
            return self.ok(250, &host).await;
        }
        let greet = format!("{host} greets {arg}");
        let size = format!("SIZE {}", self.shared.config.max_message_bytes);
        let mut lines = vec![
            greet.as_str(),
            "8BITMIME",
            "ENHANCEDSTATUSCODES",
            size.as_str(),
        ];
        if self.shared.config.smtputf8 {
            lines.push("SMTPUTF8");
        }
        let auth = format!("AUTH {}", self.shared.config.auth_mechanisms.join(" "));
        if !self.shared.config.auth_mechanisms.is_empty() {
            lines.push(auth.as_str());
        }
        self.reply(250, &lines).await?;
        Ok(Flow::Continue)
    }

    async fn auth(&mut self, arg: &str) -> io::Result<Flow> {
        if self.hello.is_none() {
            return self.ok(503, "5.5.1 EHLO first").await;
        }
        if self.auth_user.is_some() || self.mail_from.is_some() {
            return self.ok(503, "5.5.1 AUTH not allowed now").await;
        }
        let mut parts = arg.split_whitespace();
        let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
        let initial = parts.next().map(str::to_string);
        if !self
            .shared
            .config
            .auth_mechanisms
            .iter()
            .any(|m| m.eq_ignore_ascii_case(&mechanism))
        {
            return self.ok(504, "5.5.4 Unrecognized authentication type").await;
        }
        let pair = match mechanism.as_str() {
            "PLAIN" => {
                let Some(response) = self.challenge(initial, "").await? else {
                    return Ok(Flow::Close);
                };
                decode_b64(&response).and_then(|plain| {
                    let mut fields = plain.split('\0');
                    let (_authz, user, pass) = (fields.next()?, fields.next()?, fields.next()?);
                    Some((user.to_string(), pass.to_string()))
                })
            }
            _ => {
                let Some(user) = self.challenge(initial, "VXNlcm5hbWU6").await? else {
                    return Ok(Flow::Close);
                };
                let Some(pass) = self.challenge(None, "UGFzc3dvcmQ6").await? else {
                    return Ok(Flow::Close);
                };
                decode_b64(&user).zip(decode_b64(&pass))
            }
        };
        let Some((user, pass)) = pair else {
            return self
                .ok(
                    501,
                    "5.5.2 Cannot decode the response or authentication cancelled",
                )
                .await;
        };
        let accepted = match &self.shared.config.credentials {
            Some((u, p)) => *u == user && *p == pass,
            None => true,
        };
        if accepted {
            self.auth_user = Some(user);
            return self.ok(235, "2.7.0 Authentication successful").await;
        }
        self.auth_failures += 1;
        self.reply(535, &[text_for(535)]).await?;
        Ok(if self.auth_failures >= MAX_AUTH_FAILURES {
            Flow::Close
        } else {
            Flow::Continue
        })
    }

    /// The client's answer to a `334` challenge (or the initial response it already gave);
    /// `None` when the session ends.
    async fn challenge(
        &mut self,
        initial: Option<String>,
        prompt: &str,
    ) -> io::Result<Option<String>> {
        if let Some(i) = initial {
            return Ok(Some(i));
        }
        self.reply(334, &[prompt]).await?;
        Ok(match self.read_line().await? {
            Line::Text(t) => Some(t.trim().to_string()),
            Line::TooLong => Some("*".to_string()),
            Line::Eof | Line::Idle => None,
        })
    }

    async fn mail(&mut self, arg: &str) -> io::Result<Flow> {
        if self.shared.faults.drops_at(Stage::Mail) {
            return Ok(Flow::Close);
        }
        if self.hello.is_none() {
            return self.ok(503, "5.5.1 EHLO first").await;
        }
        if self.shared.config.credentials.is_some() && self.auth_user.is_none() {
            return self.fault(530).await;
        }
        if self.mail_from.is_some() {
            return self.ok(503, "5.5.1 Nested MAIL command").await;
        }
        let Some((path, params)) = path_arg(arg, "FROM:") else {
            return self.ok(501, "5.5.4 Syntax: MAIL FROM:<address>").await;
        };
        let size = params
            .split_whitespace()
            .find_map(|p| {
                p.get(..5)
                    .filter(|h| h.eq_ignore_ascii_case("SIZE="))
                    .and(p.get(5..))
            })
            .and_then(|n| n.parse::<usize>().ok());
        if size.is_some_and(|n| n > self.shared.config.max_message_bytes) {
            return self.fault(552).await;
        }
        self.mail_from = Some(path.to_string());
        self.ok(250, "2.1.0 Ok").await
    }

    async fn rcpt(&mut self, arg: &str) -> io::Result<Flow> {
        if self.shared.faults.drops_at(Stage::Rcpt) {
            return Ok(Flow::Close);
        }
        if self.mail_from.is_none() {
            return self.ok(503, "5.5.1 MAIL first").await;
        }
        let Some((path, _)) = path_arg(arg, "TO:") else {
            return self.ok(501, "5.5.4 Syntax: RCPT TO:<address>").await;
        };
        if path.is_empty() || !path.contains('@') {
            return self.ok(553, "5.1.3 Bad recipient address syntax").await;
        }
        if let Some(code) = self.shared.faults.rcpt() {
            return self.fault(code).await;
        }
        let code = match local_part(path).as_str() {
            REJECT_LOCAL_PART => Some(550),
            BUSY_LOCAL_PART => Some(451),
            THROTTLE_LOCAL_PART => Some(421),
            _ => None,
        };
        if let Some(code) = code {
            return self.fault(code).await;
        }
        if self.rcpt_to.len() >= MAX_RECIPIENTS {
            return self.ok(452, "4.5.3 Too many recipients").await;
        }
        self.rcpt_to.push(path.to_string());
        self.ok(250, "2.1.5 Ok").await
    }

    async fn data(&mut self) -> io::Result<Flow> {
        if self.shared.faults.drops_at(Stage::Data) {
            return Ok(Flow::Close);
        }
        if self.mail_from.is_none() || self.rcpt_to.is_empty() {
            return self.ok(503, "5.5.1 RCPT first").await;
        }
        self.reply(354, &["End data with <CR><LF>.<CR><LF>"])
            .await?;

        let max = self.shared.config.max_message_bytes;
        let (mut data, mut too_big, mut bad_line) = (String::new(), false, false);
        loop {
            match self.read_line().await? {
                Line::Text(l) if l == "." => break,
                Line::Text(l) => {
                    // Dot-unstuffing (RFC 5321 §4.5.2).
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    if data.len() + l.len() + 2 > max {
                        too_big = true;
                    } else if !too_big {
                        data.push_str(l);
                        data.push_str("\r\n");
                    }
                }
                Line::TooLong => bad_line = true,
                Line::Eof | Line::Idle => return Ok(Flow::Close),
            }
        }
        let spam = self
            .rcpt_to
            .iter()
            .any(|r| local_part(r) == SPAM_LOCAL_PART);
        let mail_from = self.mail_from.take().unwrap_or_default();
        let rcpt_to = std::mem::take(&mut self.rcpt_to);

        if self.shared.faults.drops_at(Stage::EndOfData) {
            return Ok(Flow::Close);
        }
        if too_big {
            return self.fault(552).await;
        }
        if bad_line {
            return self.ok(500, "5.5.6 Line too long").await;
        }
        match self.shared.faults.common().draw() {
            Fault::ServerError => return self.fault(451).await,
            Fault::Throttle(_) => return self.fault(421).await,
            Fault::Timeout => {
                self.shared.faults.common().delay(Fault::Timeout).await;
                return Ok(Flow::Close);
            }
            Fault::None => {}
        }
        if let Some(code) = self.shared.faults.data() {
            return self.fault(code).await;
        }
        if spam {
            return self.fault(554).await;
        }

        let queue_id = self.shared.next_queue_id();
        let (headers, body) = ReceivedMail::parse(data.clone());
        let mail = ReceivedMail {
            queue_id: queue_id.clone(),
            mail_from,
            rcpt_to,
            auth_user: self.auth_user.clone(),
            hello: self.hello.clone(),
            raw: data,
            headers,
            body,
        };
        self.record(mail);
        self.ok(250, &format!("2.0.0 Ok: queued as {queue_id}"))
            .await
    }

    fn record(&self, mail: ReceivedMail) {
        let headers: serde_json::Map<String, serde_json::Value> = mail
            .headers
            .iter()
            .rev() // the first of a repeated header wins
            .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::String(v.clone())))
            .collect();
        self.shared.recorder.record(Received {
            provider_id: mail.queue_id.clone(),
            weft_message_id: mail.weft_message_id().map(str::to_string),
            to: mail.rcpt_to.join(","),
            from: Some(mail.mail_from.clone()),
            body: Some(mail.body.clone()),
            raw: serde_json::json!({
                "mail_from": mail.mail_from,
                "rcpt_to": mail.rcpt_to,
                "auth_user": mail.auth_user,
                "hello": mail.hello,
                "message_id": mail.message_id(),
                "subject": mail.subject(),
                "headers": headers,
                "data": mail.raw,
            }),
        });
        if let Ok(mut all) = self.shared.mails.lock() {
            all.push(mail);
        }
    }

    async fn reply(&mut self, code: u16, lines: &[&str]) -> io::Result<()> {
        let latency = self.shared.faults.common().latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut out = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            out.push_str(&format!("{code}{sep}{line}\r\n"));
        }
        self.writer.write_all(out.as_bytes()).await?;
        self.writer.flush().await
    }

    /// One line without its CRLF, at most `max_line` bytes (longer ones are read to their end
    /// and reported, not kept), waiting at most the idle timeout for each chunk.
    async fn read_line(&mut self) -> io::Result<Line> {
        let max = self.shared.config.max_line;
        let idle = self.shared.config.idle_timeout;
        let mut buf: Vec<u8> = Vec::new();
        let mut too_long = false;
        loop {
            let (used, done) = {
                let chunk = match tokio::time::timeout(idle, self.reader.fill_buf()).await {
                    Err(_) => return Ok(Line::Idle),
                    Ok(r) => r?,
                };
                if chunk.is_empty() {
                    return Ok(Line::Eof);
                }
                let (take, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                    Some(i) => (i, i + 1, true),
                    None => (chunk.len(), chunk.len(), false),
                };
                if !too_long {
                    buf.extend_from_slice(&chunk[..take]);
                }
                (used, done)
            };
            self.reader.consume(used);
            if buf.len() > max + 1 {
                too_long = true;
                buf.clear();
            }
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Line::TooLong);
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        if buf.len() > max {
            return Ok(Line::TooLong);
        }
        Ok(Line::Text(String::from_utf8_lossy(&buf).into_owned()))
    }
}

fn decode_b64(s: &str) -> Option<String> {
    if s == "*" {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        assert_eq!(
            path_arg("FROM:<a@b> SIZE=10", "FROM:"),
            Some(("a@b", "SIZE=10"))
        );
        assert_eq!(path_arg("from: <a@b>", "FROM:"), Some(("a@b", "")));
        assert_eq!(path_arg("FROM:<>", "FROM:"), Some(("", "")));
        assert_eq!(path_arg("TO:a@b", "TO:"), None);
        assert_eq!(path_arg("T", "TO:"), None);
        assert_eq!(local_part("Reject@Example.com"), "reject");
    }

    #[test]
    fn canned_texts_carry_enhanced_codes() {
        for code in [421, 450, 451, 452, 530, 535, 550, 552, 553, 554, 599, 499] {
            assert!(
                crate::errors::enhanced_status(text_for(code)).is_some(),
                "{code}"
            );
        }
    }
}
