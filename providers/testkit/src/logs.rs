//! Captures what an adapter logs, to check that no secret leaks.

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A buffer that a tracing subscriber writes into, installed for the current thread.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Installs a TRACE-level subscriber writing into this capture for the current thread.
    pub fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Panics if any of `secrets` appears in the captured text or in `extra`.
    pub fn assert_no_secrets(&self, case: &str, secrets: &[String], extra: &str) {
        let text = self.text();
        for s in secrets.iter().filter(|s| s.len() >= 4) {
            assert!(
                !text.contains(s.as_str()),
                "{case}: a secret appears in the adapter's logs"
            );
            assert!(
                !extra.contains(s.as_str()),
                "{case}: a secret appears in the adapter's output"
            );
        }
    }
}

impl Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
