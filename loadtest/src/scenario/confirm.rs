//! The `confirm` scenario: `GetConfirmBucket` of a random prefix, what a phone does after a filter
//! hit to turn it into an exact answer (DESIGN.md section 5).

use exposure_proto::v1::{GetConfirmBucketRequest, GetConfirmBucketResponse};
use rand::Rng as _;
use tonic::Status;

use crate::client::Clients;

/// Returns a prefix of `bits` bits drawn uniformly (right-aligned, as the API carries it).
pub fn random_prefix(bits: u32) -> u32 {
    let mut rng = rand::thread_rng();
    match bits {
        0 => 0,
        1..=31 => rng.gen_range(0..(1_u32 << bits)),
        _ => rng.r#gen(),
    }
}

/// Fetches one confirm bucket: the request a phone sends after a filter hit.
pub async fn fetch(
    clients: &mut Clients,
    region: &str,
    prefix: u32,
    prefix_bits: u32,
) -> Result<GetConfirmBucketResponse, Status> {
    let request = GetConfirmBucketRequest {
        region: region.to_owned(),
        prefix,
        prefix_bits,
    };
    Ok(clients
        .distribution
        .get_confirm_bucket(request)
        .await?
        .into_inner())
}

/// Fetches one confirm bucket and returns the digest bytes received.
pub async fn call(
    clients: &mut Clients,
    region: &str,
    prefix: u32,
    prefix_bits: u32,
) -> Result<u64, Status> {
    let response = fetch(clients, region, prefix, prefix_bits).await?;
    Ok(response
        .digests
        .iter()
        .map(|digest| digest.len() as u64)
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_fit_their_width() {
        for bits in [1, 8, 16, 20] {
            for _ in 0..200 {
                assert!(random_prefix(bits) < (1 << bits));
            }
        }
        assert_eq!(random_prefix(0), 0);
        let _full_width = random_prefix(32);
    }
}
