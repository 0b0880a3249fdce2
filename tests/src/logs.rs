//! The server's log lines, kept in memory, for the few tests that wait on something only the
//! log tells (a certificate the server refused to load). The subscriber is global, installed once
//! per test process; every server the process runs writes into the same buffer.

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// Every log line written since [`capture`] first ran in this process.
static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Appends what the subscriber writes to the shared buffer.
#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Starts keeping log lines (at info and above) in memory, if this process does not already.
pub fn capture() {
    CAPTURED.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let installed = tracing_subscriber::fmt()
            .with_writer(Buffer(buffer.clone()))
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init();
        assert!(
            installed.is_ok(),
            "another global subscriber is installed: {installed:?}"
        );
        buffer
    });
}

/// Returns the log lines captured so far.
pub fn captured() -> String {
    let buffer = CAPTURED.get().expect("logs::capture() ran first");
    String::from_utf8_lossy(&buffer.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}

/// Waits until `count` captured lines contain `needle`; panics after 30 s.
pub async fn wait_for(needle: &str, count: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let seen = captured()
            .lines()
            .filter(|line| line.contains(needle))
            .count();
        if seen >= count {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{seen} of {count} log lines with {needle:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
