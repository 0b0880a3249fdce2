//! Decoy uploads (DESIGN.md section 12): phones send them at random times so that someone
//! watching the network cannot tell a positive patient's upload from any other. A decoy must
//! therefore take as long as a real upload: its answer is delayed by a latency drawn from the
//! most recent real uploads.

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// Real upload latencies remembered.
const SAMPLES: usize = 256;
/// The delay used before any real upload was seen: a group commit's typical time.
const DEFAULT_DELAY: Duration = Duration::from_millis(20);
/// No decoy waits longer than this, whatever a stalled real upload took.
const MAX_DELAY: Duration = Duration::from_secs(2);

/// A ring of recent real upload latencies.
#[derive(Default)]
pub struct DecoyTiming {
    samples: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    latencies: Vec<Duration>,
    next: usize,
}

impl DecoyTiming {
    /// Remembers the latency of a real upload that was answered.
    pub fn record(&self, latency: Duration) {
        let mut ring = self.lock();
        if ring.latencies.len() < SAMPLES {
            ring.latencies.push(latency);
        } else {
            let slot = ring.next;
            ring.latencies[slot] = latency;
        }
        ring.next = (ring.next + 1) % SAMPLES;
    }

    /// Returns a delay drawn uniformly from the remembered latencies.
    pub fn sample_delay(&self) -> Duration {
        let ring = self.lock();
        if ring.latencies.is_empty() {
            return DEFAULT_DELAY;
        }
        let index = rand::thread_rng().gen_range(0..ring.latencies.len());
        ring.latencies[index].min(MAX_DELAY)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.samples
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_come_from_the_recorded_latencies() {
        let timing = DecoyTiming::default();
        assert_eq!(timing.sample_delay(), DEFAULT_DELAY);
        for millis in [5, 7, 11] {
            timing.record(Duration::from_millis(millis));
        }
        for _ in 0..100 {
            let delay = timing.sample_delay();
            assert!([5, 7, 11].map(Duration::from_millis).contains(&delay));
        }
    }

    #[test]
    fn the_ring_keeps_only_the_most_recent_latencies() {
        let timing = DecoyTiming::default();
        for _ in 0..SAMPLES {
            timing.record(Duration::from_millis(1));
        }
        for _ in 0..SAMPLES {
            timing.record(Duration::from_millis(9));
        }
        for _ in 0..100 {
            assert_eq!(timing.sample_delay(), Duration::from_millis(9));
        }
    }
}
