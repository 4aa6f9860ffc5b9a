//! What a simulator received, so tests can count deliveries per weft message.

use std::collections::HashMap;
use std::sync::Mutex;

/// One accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The id the simulator gave it.
    pub provider_id: String,
    /// weft's message id, from wherever the provider carries correlation.
    pub weft_message_id: Option<String>,
    pub to: String,
    pub from: Option<String>,
    pub body: Option<String>,
    /// The raw request (form/JSON) for detailed assertions.
    pub raw: serde_json::Value,
}

#[derive(Debug, Default)]
pub struct Recorder {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    all: Vec<Received>,
    per_message: HashMap<String, u32>,
}

impl Recorder {
    pub fn record(&self, r: Received) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(id) = &r.weft_message_id {
                *g.per_message.entry(id.clone()).or_default() += 1;
            }
            g.all.push(r);
        }
    }

    /// Every accepted send, in arrival order.
    pub fn all(&self) -> Vec<Received> {
        self.inner.lock().map(|g| g.all.clone()).unwrap_or_default()
    }

    pub fn count(&self) -> usize {
        self.inner.lock().map(|g| g.all.len()).unwrap_or(0)
    }

    /// How many times each weft message id was accepted.
    pub fn per_message(&self) -> HashMap<String, u32> {
        self.inner
            .lock()
            .map(|g| g.per_message.clone())
            .unwrap_or_default()
    }

    /// Distinct weft message ids accepted more than once.
    pub fn duplicates(&self) -> Vec<String> {
        self.per_message()
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(k, _)| k)
            .collect()
    }

    pub fn find_by_message(&self, weft_message_id: &str) -> Vec<Received> {
        self.all()
            .into_iter()
            .filter(|r| r.weft_message_id.as_deref() == Some(weft_message_id))
            .collect()
    }
}
