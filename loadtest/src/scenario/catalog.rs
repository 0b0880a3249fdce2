//! What a run knows about the region's published batches: the newest batch ids (for downloads),
//! the head sequence (for poll cursors) and the deployment's confirm prefix length (for confirm
//! buckets). Loaded once before the run with `ListBatches`, then refreshed by every poll response.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::{ListBatchesRequest, ListBatchesResponse};
use rand::Rng as _;
use tonic::transport::Channel;

/// How many of the newest batches downloads choose from: a day of hourly batches plus the daily
/// roll-ups a phone back from a trip fetches.
pub const DOWNLOAD_POOL: usize = 64;

/// Upper bound on the `ListBatches` pages read when a run starts (each holds up to 1,000 batches;
/// 14 days of hourly batches and roll-ups fit in one).
const MAX_LISTING_PAGES: usize = 50;

/// Confirm prefix length assumed when the server does not say (DESIGN.md section 5 default).
const DEFAULT_CONFIRM_PREFIX_BITS: u32 = 16;

/// The shared batch knowledge of one run.
#[derive(Debug)]
pub struct Catalog {
    confirm_prefix_bits: u32,
    latest_sequence: AtomicU64,
    /// Newest batches by sequence, at most [`DOWNLOAD_POOL`].
    newest: Mutex<BTreeMap<u64, String>>,
}

impl Catalog {
    /// A catalog that knows nothing (for scenarios that never read batches).
    pub fn empty() -> Self {
        Catalog::with_prefix_bits(DEFAULT_CONFIRM_PREFIX_BITS)
    }

    /// A catalog that knows nothing yet, for a deployment with this confirm prefix length (0
    /// reads as the default).
    pub(crate) fn with_prefix_bits(confirm_prefix_bits: u32) -> Self {
        let confirm_prefix_bits = if confirm_prefix_bits == 0 {
            DEFAULT_CONFIRM_PREFIX_BITS
        } else {
            confirm_prefix_bits
        };
        Catalog {
            confirm_prefix_bits,
            latest_sequence: AtomicU64::new(0),
            newest: Mutex::new(BTreeMap::new()),
        }
    }

    /// Reads the region's listing from the start, page by page.
    pub async fn load(
        client: &mut DistributionClient<Channel>,
        region: &str,
    ) -> anyhow::Result<Self> {
        let mut catalog: Option<Catalog> = None;
        let mut cursor = 0;
        for _ in 0..MAX_LISTING_PAGES {
            let request = ListBatchesRequest {
                region: region.to_owned(),
                after_sequence: cursor,
                limit: 0,
            };
            let response = client
                .list_batches(request)
                .await
                .with_context(|| format!("cannot list the batches of region {region}"))?
                .into_inner();
            let bits = if response.confirm_prefix_bits == 0 {
                DEFAULT_CONFIRM_PREFIX_BITS
            } else {
                response.confirm_prefix_bits
            };
            let current = catalog.get_or_insert_with(|| Catalog::with_prefix_bits(bits));
            current.observe(&response);
            match response.batches.last() {
                Some(last) if response.more && last.sequence > cursor => cursor = last.sequence,
                _ => break,
            }
        }
        Ok(catalog.unwrap_or_else(Catalog::empty))
    }

    /// Learns from a `ListBatches` answer: the head sequence and the newest batch ids.
    pub fn observe(&self, response: &ListBatchesResponse) {
        self.latest_sequence
            .fetch_max(response.latest_sequence, Ordering::Relaxed);
        if let Some(last) = response.batches.iter().map(|batch| batch.sequence).max() {
            self.latest_sequence.fetch_max(last, Ordering::Relaxed);
        }
        if response.batches.is_empty() {
            return;
        }
        let Ok(mut newest) = self.newest.lock() else {
            return;
        };
        for batch in &response.batches {
            newest.insert(batch.sequence, batch.batch_id.clone());
        }
        while newest.len() > DOWNLOAD_POOL {
            newest.pop_first();
        }
    }

    /// Returns the deployment's confirm prefix length in bits.
    pub fn confirm_prefix_bits(&self) -> u32 {
        self.confirm_prefix_bits
    }

    /// Returns the highest sequence seen.
    pub fn latest_sequence(&self) -> u64 {
        self.latest_sequence.load(Ordering::Relaxed)
    }

    /// Returns a cursor drawn uniformly from `0..=latest_sequence` (a phone that last polled at
    /// some random point in the past).
    pub fn random_cursor(&self) -> u64 {
        rand::thread_rng().gen_range(0..=self.latest_sequence())
    }

    /// Returns one of the newest batch ids at random, or `None` when none is known.
    pub fn pick_batch(&self) -> Option<String> {
        let newest = self.newest.lock().ok()?;
        if newest.is_empty() {
            return None;
        }
        let index = rand::thread_rng().gen_range(0..newest.len());
        newest.values().nth(index).cloned()
    }

    /// Returns true when no batch id is known.
    pub fn is_empty(&self) -> bool {
        self.newest
            .lock()
            .map(|newest| newest.is_empty())
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use exposure_proto::v1::BatchInfo;

    fn listing(sequences: std::ops::RangeInclusive<u64>) -> ListBatchesResponse {
        let batches = sequences
            .clone()
            .map(|sequence| BatchInfo {
                batch_id: format!("id{sequence}"),
                sequence,
                ..Default::default()
            })
            .collect();
        ListBatchesResponse {
            batches,
            confirm_prefix_bits: 16,
            latest_sequence: *sequences.end(),
            more: false,
        }
    }

    #[test]
    fn empty_catalog_has_nothing_to_download() {
        let catalog = Catalog::empty();
        assert!(catalog.is_empty());
        assert_eq!(catalog.pick_batch(), None);
        assert_eq!(catalog.random_cursor(), 0);
    }

    #[test]
    fn observe_keeps_only_the_newest_batches() {
        let catalog = Catalog::empty();
        catalog.observe(&listing(1..=200));
        assert_eq!(catalog.latest_sequence(), 200);
        for _ in 0..100 {
            let id = catalog.pick_batch().expect("a batch");
            let sequence: u64 = id.trim_start_matches("id").parse().expect("number");
            assert!(sequence > 200 - DOWNLOAD_POOL as u64, "{sequence}");
            assert!(catalog.random_cursor() <= 200);
        }
    }
}
