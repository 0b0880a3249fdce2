//! A phone's day for benchmarks: the observations and the plain loop that criterion's
//! `phone_daily_match` group (matcher/benches/pipeline.rs) times, and that `bench-province`
//! runs in-process to calibrate its baseline against. Both call this one module, so the plain
//! loop the province's baseline is compared with is the code criterion measures.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{ObservationError, ObservationStore};
use crate::batch::BatchFile;
use crate::scheme::{GAEN_INTERVAL_SECONDS, GaenKey, Scheme, rolling_proximity_identifier};

/// One observation in this many is a real RPI of a published key; the rest are random RPIs.
pub const REAL_RPI_ONE_IN: usize = 500;

/// What a phone heard in a day, stored as tags.
#[derive(Clone, Debug)]
pub struct BenchmarkPhoneDay {
    /// Each RPI heard and when (Unix seconds), in the order heard.
    heard: Vec<([u8; 16], u64)>,
    /// The tags of every observation, in store order.
    store: ObservationStore,
}

impl BenchmarkPhoneDay {
    /// Draws `observations` RPIs with a seeded RNG, each heard at a random second of a random
    /// interval of a random key of `keys`: observation `i` is that key's real RPI when
    /// `i % REAL_RPI_ONE_IN == 0`, a random one otherwise. Stores them with `tolerance` slots
    /// on each side, as a phone does.
    pub fn generate(
        keys: &[GaenKey],
        observations: usize,
        tolerance: u32,
        seed: u64,
    ) -> Result<BenchmarkPhoneDay, ObservationError> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut heard = Vec::with_capacity(observations);
        for index in 0..observations {
            let Some(key) = pick(keys, &mut rng) else {
                break;
            };
            let interval =
                key.rolling_start_interval_number + rng.next_u32() % key.rolling_period.max(1);
            let heard_at = u64::from(interval) * GAEN_INTERVAL_SECONDS
                + u64::from(rng.next_u32()) % GAEN_INTERVAL_SECONDS;
            let rpi = if index % REAL_RPI_ONE_IN == 0 {
                rolling_proximity_identifier(&key.rpik(), interval)
            } else {
                let mut rpi = [0u8; 16];
                rng.fill_bytes(&mut rpi);
                rpi
            };
            heard.push((rpi, heard_at));
        }
        let mut store = ObservationStore::with_tolerance(tolerance);
        for (rpi, heard_at) in &heard {
            store.observe(Scheme::Gaen, rpi, *heard_at, GAEN_INTERVAL_SECONDS)?;
        }
        Ok(BenchmarkPhoneDay { heard, store })
    }

    /// Returns each RPI heard and when, in the order heard.
    pub fn heard(&self) -> &[([u8; 16], u64)] {
        &self.heard
    }

    /// Returns the phone's store of tags.
    pub fn store(&self) -> &ObservationStore {
        &self.store
    }

    /// Returns the lookups of one match: one per stored tag.
    pub fn lookups(&self) -> usize {
        self.store.tags().len()
    }

    /// The plain loop: one DESIGN §4 lookup per stored tag, in store order
    /// ([`ObservationStore::match_batch_plain`]). Returns the filter hits.
    pub fn plain_loop(&self, batch: &BatchFile<'_>) -> usize {
        self.store.match_batch_plain(batch).len()
    }
}

/// Returns a random key of `keys`, or `None` when there is none.
fn pick<'a>(keys: &'a [GaenKey], rng: &mut ChaCha8Rng) -> Option<&'a GaenKey> {
    if keys.is_empty() {
        return None;
    }
    let index = ((u64::from(rng.next_u32()) * keys.len() as u64) >> 32) as usize;
    keys.get(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Vec<GaenKey> {
        (0..3u8)
            .map(|byte| GaenKey {
                key_data: [byte; 16],
                rolling_start_interval_number: 2_642_976,
                rolling_period: 144,
            })
            .collect()
    }

    #[test]
    fn a_day_holds_three_tags_per_observation_and_its_real_rpis() {
        let keys = keys();
        let day = BenchmarkPhoneDay::generate(&keys, 1_001, 1, 3).expect("a valid day");
        assert_eq!(day.heard().len(), 1_001);
        assert_eq!(day.lookups(), 3_003);
        // Observations 0, 500 and 1,000 are real RPIs: each is one of the keys' RPIs of the
        // interval it was heard in.
        for index in [0, 500, 1_000] {
            let (rpi, heard_at) = day.heard()[index];
            let interval = u32::try_from(heard_at / 600).expect("an interval number");
            assert!(
                keys.iter()
                    .any(|key| rolling_proximity_identifier(&key.rpik(), interval) == rpi),
                "observation {index}"
            );
            assert!((2_642_976..2_642_976 + 144).contains(&interval));
        }
        let again = BenchmarkPhoneDay::generate(&keys, 1_001, 1, 3).expect("a valid day");
        assert_eq!(again.heard(), day.heard());
        assert!(
            BenchmarkPhoneDay::generate(&[], 10, 1, 3)
                .expect("no keys, no day")
                .heard()
                .is_empty()
        );
    }
}
