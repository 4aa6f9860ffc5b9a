//! What every in-process e-mail simulator needs (feature `simulator`): the state its HTTP
//! handlers and public handle share ([`SimCore`]), posting to weft and reading the answer
//! ([`WebhookReply`]), the inbound mail it is asked to post ([`InboundMail`]) and a few
//! generators.

use crate::email;
use rand::Rng;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use weft_simkit::{Callbacker, Faults, Recorder};

/// What weft answered to a simulated webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// The `Message-ID` (no brackets) the simulator gave an inbound mail; empty for events.
    pub message_id: String,
    pub status: u16,
    pub body: String,
}

/// An inbound mail to post: from `from` (`Name <addr>` allowed) to `to`, optionally answering
/// `in_reply_to` with `references` (ids with or without brackets).
#[derive(Debug, Clone, Copy)]
pub struct InboundMail<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub references: &'a [&'a str],
}

impl InboundMail<'_> {
    /// `In-Reply-To`, in angle brackets.
    pub fn in_reply_to_header(&self) -> Option<String> {
        self.in_reply_to.map(email::bracket)
    }

    /// The `References` ids, each in angle brackets.
    pub fn reference_ids(&self) -> Vec<String> {
        self.references.iter().map(|r| email::bracket(r)).collect()
    }
}

/// The state a simulator's handlers and handle share, besides its own configuration.
#[derive(Debug)]
pub struct SimCore {
    pub faults: Faults,
    pub recorder: Recorder,
    pub callbacks: Arc<Callbacker>,
    /// Posts inbound mail and on-demand events to weft.
    pub client: reqwest::Client,
    events_url: Mutex<Option<String>>,
    open_events: AtomicBool,
}

impl SimCore {
    /// Sends events to `events_url` (if any), with open events if `open_events`.
    pub fn new(events_url: Option<String>, open_events: bool) -> std::io::Result<SimCore> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(SimCore {
            faults: Faults::default(),
            recorder: Recorder::default(),
            callbacks: Arc::new(Callbacker::default()),
            client,
            events_url: Mutex::new(events_url),
            open_events: AtomicBool::new(open_events),
        })
    }

    /// Where events go (`None`: no events).
    pub fn events_url(&self) -> Option<String> {
        self.events_url.lock().ok().and_then(|g| g.clone())
    }

    pub fn set_events_url(&self, url: Option<String>) {
        if let Ok(mut g) = self.events_url.lock() {
            *g = url;
        }
    }

    /// Whether delivered mail also gets an open event.
    pub fn open_events(&self) -> bool {
        self.open_events.load(Ordering::Relaxed)
    }

    pub fn set_open_events(&self, on: bool) {
        self.open_events.store(on, Ordering::Relaxed);
    }

    /// Posts `body` to `url` now with these extra headers; `message_id` goes in the reply.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        message_id: String,
    ) -> Result<WebhookReply, reqwest::Error> {
        let mut req = self
            .client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        Ok(WebhookReply {
            message_id,
            status,
            body: resp.text().await.unwrap_or_default(),
        })
    }
}

/// `n` characters drawn from `alphabet` (ASCII).
pub fn random_chars(alphabet: &[u8], n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Now as an RFC 2822 `Date` value.
pub fn rfc2822_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_headers_and_generators() {
        let mail = InboundMail {
            from: "a@x",
            to: "b@y",
            subject: "s",
            text: "t",
            in_reply_to: Some("p@x"),
            references: &["<a@x>", "p@x"],
        };
        assert_eq!(mail.in_reply_to_header().as_deref(), Some("<p@x>"));
        assert_eq!(mail.reference_ids(), vec!["<a@x>", "<p@x>"]);
        let id = random_chars(b"ab", 12);
        assert!(id.len() == 12 && id.chars().all(|c| c == 'a' || c == 'b'));
        assert!(rfc2822_now().ends_with("+0000"));
    }

    #[test]
    fn switches() {
        let core = match SimCore::new(None, false) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(core.events_url(), None);
        core.set_events_url(Some("http://127.0.0.1:1/e".into()));
        core.set_open_events(true);
        assert_eq!(core.events_url().as_deref(), Some("http://127.0.0.1:1/e"));
        assert!(core.open_events());
    }
}
