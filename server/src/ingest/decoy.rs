//! Decoy uploads (DESIGN.md section 12): phones send them at random times so that someone
//! watching the network cannot tell a positive patient's upload from any other. A decoy must
//! therefore take as long as a real upload: its answer is delayed by a latency drawn from the
//! most recent real code uploads (phones' uploads; an authority's token uploads are another
//! population and are left out).

use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;

/// Real upload latencies remembered.
const SAMPLES: usize = 256;
/// The ring is saved to the store after this many new latencies, so decoys after a restart
/// draw from real uploads rather than from one fixed delay (one small synced write per this
/// many code uploads).
pub const SAVE_EVERY: usize = 16;
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
    /// Latencies recorded since the ring was last saved.
    unsaved: usize,
}

impl DecoyTiming {
    /// Returns a ring holding `saved` (the latencies a previous run saved, oldest first).
    pub fn restored(saved: Vec<Duration>) -> Self {
        let timing = Self::default();
        for latency in saved.into_iter().rev().take(SAMPLES).rev() {
            timing.record(latency);
        }
        timing.lock().unsaved = 0;
        timing
    }

    /// Remembers the latency of a real upload that was answered; returns the latencies to
    /// save, oldest first, once [`SAVE_EVERY`] new ones have come since the last save.
    pub fn record(&self, latency: Duration) -> Option<Vec<Duration>> {
        let mut ring = self.lock();
        if ring.latencies.len() < SAMPLES {
            ring.latencies.push(latency);
        } else {
            let slot = ring.next;
            ring.latencies[slot] = latency;
        }
        ring.next = (ring.next + 1) % SAMPLES;
        ring.unsaved += 1;
        if ring.unsaved < SAVE_EVERY {
            return None;
        }
        ring.unsaved = 0;
        let (newer, older) = ring.latencies.split_at(ring.next.min(ring.latencies.len()));
        Some(older.iter().chain(newer).copied().collect())
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
            assert_eq!(timing.record(Duration::from_millis(millis)), None);
        }
        for _ in 0..100 {
            let delay = timing.sample_delay();
            assert!([5, 7, 11].map(Duration::from_millis).contains(&delay));
        }
    }

    #[test]
    fn a_restored_ring_draws_from_the_saved_latencies_and_saves_in_order() {
        let saved: Vec<Duration> = (1..=300).map(Duration::from_millis).collect();
        let timing = DecoyTiming::restored(saved);
        for _ in 0..100 {
            let delay = timing.sample_delay();
            assert!(delay >= Duration::from_millis(45) && delay <= Duration::from_millis(300));
        }
        let mut to_save = None;
        for millis in 1000..1000 + SAVE_EVERY as u64 {
            assert!(to_save.is_none());
            to_save = timing.record(Duration::from_millis(millis));
        }
        let to_save = to_save.expect("saved after SAVE_EVERY latencies");
        assert_eq!(to_save.len(), SAMPLES);
        assert_eq!(to_save[0], Duration::from_millis(45 + SAVE_EVERY as u64));
        assert_eq!(
            to_save[SAMPLES - 1],
            Duration::from_millis(999 + SAVE_EVERY as u64)
        );
        let again = DecoyTiming::restored(to_save.clone());
        assert_eq!(again.record(Duration::ZERO), None);
    }

    #[test]
    fn the_ring_keeps_only_the_most_recent_latencies() {
        let timing = DecoyTiming::default();
        for _ in 0..SAMPLES {
            let _ = timing.record(Duration::from_millis(1));
        }
        for _ in 0..SAMPLES {
            let _ = timing.record(Duration::from_millis(9));
        }
        for _ in 0..100 {
            assert_eq!(timing.sample_delay(), Duration::from_millis(9));
        }
    }
}
