//! A progress bar on stderr while a run goes, only when stderr is a terminal: piped output and CI
//! logs stay clean. The bar tracks time (runs usually end at `--duration`) and shows the answers
//! received so far.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinHandle;

/// How often the bar is redrawn.
const REFRESH: Duration = Duration::from_millis(100);

/// The progress display of one run; does nothing when stderr is not a terminal.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Returns true when a bar would be shown (stderr is a terminal).
    pub fn wanted() -> bool {
        std::io::stderr().is_terminal()
    }

    /// Starts the display when `enabled`: a bar over `duration` from `started`, with the count in
    /// `answered`.
    pub fn start(
        enabled: bool,
        started: Instant,
        duration: Duration,
        answered: Arc<AtomicU64>,
    ) -> Self {
        if !enabled {
            return Progress {
                bar: None,
                ticker: None,
            };
        }
        let total_ms = u64::try_from(duration.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let bar = ProgressBar::new(total_ms);
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] [{bar:40.cyan/blue}] {msg}")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticking = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut interval = tokio::time::interval(REFRESH);
            loop {
                interval.tick().await;
                let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                ticking.set_position(elapsed.min(total_ms));
                let count = answered.load(Ordering::Relaxed);
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                ticking.set_message(format!("{count} answers, {:.0}/s", count as f64 / seconds));
            }
        });
        Progress {
            bar: Some(bar),
            ticker: Some(ticker),
        }
    }

    /// Stops and clears the display.
    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
