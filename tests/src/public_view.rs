//! What an outsider holds: every public object of a region, fetched from the HTTP listener alone
//! (region index, day indexes, batch files, confirm buckets, GAEN `index.txt` and zips), and an
//! independent reading of a batch's filter from DESIGN §4's header layout and lookup
//! pseudo-code, so the tests that play a curious outsider or a phone trust neither the server
//! nor the matcher crate for what a file says.

use std::collections::HashMap;

use exposure_matcher::gaen::GaenExport;
use exposure_proto::v1::{
    BatchInfo, GetConfirmBucketResponse, GetSigningKeysResponse, ListBatchesResponse, RegionIndex,
};
use prost::Message;

use crate::http_client::HttpClient;
use crate::reference::{SCHEME_GAEN, bucket, confirm_digest, filter_key, gaen_identifiers, tag};

/// A batch's filter as DESIGN §4 lays it out.
#[derive(Clone, Debug)]
pub struct Filter {
    /// `element_count`: keys in the filter, padding included.
    pub element_count: u32,
    seed: u64,
    segment_length: u32,
    segment_length_mask: u32,
    segment_count_length: u32,
    /// 1, 2 or 4 bytes a fingerprint.
    width: usize,
    fingerprints: Vec<u8>,
}

/// Reads little-endian integers off the front of a byte slice.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, count: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(count);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().expect("8 bytes"))
    }
}

impl Filter {
    /// Reads the filter of a version-1 batch file; panics on anything else.
    pub fn parse(file: &[u8]) -> Filter {
        let mut cursor = Cursor(file);
        assert_eq!(cursor.take(4), b"EXPB", "magic");
        assert_eq!(cursor.u8(), 1, "version");
        let width = match cursor.u8() {
            1 => 1,
            2 => 2,
            3 => 4,
            other => panic!("filter_kind {other}"),
        };
        cursor.take(2);
        let region_len = usize::from(cursor.u8());
        cursor.take(region_len);
        let _sequence = cursor.u64();
        let _kind = cursor.u8();
        let _created_at = cursor.u64();
        let _slot_min = cursor.u64();
        let _slot_max = cursor.u64();
        let element_count = cursor.u32();
        let seed = cursor.u64();
        let segment_length = cursor.u32();
        let segment_length_mask = cursor.u32();
        let segment_count_length = cursor.u32();
        let fingerprint_count = cursor.u32() as usize;
        let fingerprints = cursor.take(fingerprint_count * width).to_vec();
        Filter {
            element_count,
            seed,
            segment_length,
            segment_length_mask,
            segment_count_length,
            width,
            fingerprints,
        }
    }

    fn fingerprint(&self, index: u32) -> u64 {
        let start = index as usize * self.width;
        let mut bytes = [0u8; 8];
        bytes[..self.width].copy_from_slice(&self.fingerprints[start..start + self.width]);
        u64::from_le_bytes(bytes)
    }

    /// Returns DESIGN §4's membership answer for `key`.
    pub fn contains(&self, key: u64) -> bool {
        let h = murmur64_finalizer(key.wrapping_add(self.seed));
        let mask = if self.width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * self.width)) - 1
        };
        let fingerprint = (h ^ (h >> 32)) & mask;
        let h0 = ((u128::from(h) * u128::from(self.segment_count_length)) >> 64) as u32;
        let h1 =
            h0.wrapping_add(self.segment_length) ^ ((h >> 18) as u32 & self.segment_length_mask);
        let h2 = h0.wrapping_add(2 * self.segment_length) ^ (h as u32 & self.segment_length_mask);
        fingerprint ^ self.fingerprint(h0) ^ self.fingerprint(h1) ^ self.fingerprint(h2) == 0
    }
}

/// MurmurHash3's fmix64.
fn murmur64_finalizer(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Every public object of one region, as fetched.
pub struct PublicView {
    /// Listing entries of every retained batch, sequence order.
    pub batches: Vec<(BatchInfo, Filter)>,
    /// `gaen/index.txt` as served.
    pub gaen_index: String,
    /// The GAEN zips the index names, parsed and verified, in index order.
    pub gaen_files: Vec<GaenExport>,
    /// The same zips as served.
    pub gaen_zips: Vec<Vec<u8>>,
    /// DER SubjectPublicKeyInfo of every listed signing key.
    pub signing_keys: Vec<Vec<u8>>,
    /// The deployment's confirm-prefix bits.
    pub prefix_bits: u32,
    http: HttpClient,
    region: String,
    buckets: HashMap<u32, Vec<Vec<u8>>>,
}

impl PublicView {
    /// Fetches every public object of `region` from the HTTP listener at `http_url`; each
    /// GAEN zip must verify with some key `v1/signing-keys` lists.
    pub async fn fetch(http_url: &str, region: &str) -> PublicView {
        let http = HttpClient::new(http_url);
        let get = |path: String| {
            let http = http.clone();
            async move {
                let answer = http.get(&path).await;
                assert_eq!(answer.status, 200, "{path}");
                answer.body
            }
        };
        let index = RegionIndex::decode(get(format!("/v1/regions/{region}/index")).await)
            .expect("region index");
        let mut batches = Vec::new();
        for day in &index.days {
            let listing =
                ListBatchesResponse::decode(get(format!("/v1/regions/{region}/days/{day}")).await)
                    .expect("day index");
            for info in listing.batches {
                let file = get(format!("/v1/batches/{}", info.batch_id)).await;
                batches.push((info, Filter::parse(&file)));
            }
        }
        let keys = GetSigningKeysResponse::decode(get("/v1/signing-keys".to_owned()).await)
            .expect("signing keys");
        let gaen_answer = http
            .get(&format!("/v1/regions/{region}/gaen/index.txt"))
            .await;
        let gaen_index = if gaen_answer.status == 200 {
            gaen_answer.text().to_owned()
        } else {
            String::new()
        };
        let mut gaen_files = Vec::new();
        let mut gaen_zips = Vec::new();
        for path in gaen_index.split('\n').filter(|line| !line.is_empty()) {
            let zip = get(format!("/{path}")).await;
            let export = GaenExport::parse(&zip).expect("gaen zip");
            gaen_zips.push(zip.to_vec());
            assert!(
                keys.keys
                    .iter()
                    .any(|key| export.verify(&key.public_key_der).is_ok()),
                "{path} verifies with a listed key"
            );
            gaen_files.push(export);
        }
        PublicView {
            batches,
            gaen_index,
            gaen_files,
            gaen_zips,
            signing_keys: keys
                .keys
                .into_iter()
                .map(|key| key.public_key_der)
                .collect(),
            prefix_bits: index.confirm_prefix_bits,
            http,
            region: region.to_owned(),
            buckets: HashMap::new(),
        }
    }

    /// Returns the confirm bucket of `prefix`, fetched once.
    pub async fn bucket(&mut self, prefix: u32) -> &[Vec<u8>] {
        if !self.buckets.contains_key(&prefix) {
            let path = format!(
                "/v1/regions/{}/confirm/{}/{prefix}",
                self.region, self.prefix_bits
            );
            let answer = self.http.get(&path).await;
            assert_eq!(answer.status, 200, "{path}");
            let digests = GetConfirmBucketResponse::decode(answer.body)
                .expect("confirm bucket")
                .digests;
            self.buckets.insert(prefix, digests);
        }
        &self.buckets[&prefix]
    }

    /// Returns true when the confirm bucket of `tag` holds its digest exactly.
    pub async fn confirms(&mut self, tag: &crate::reference::Tag) -> bool {
        let digest = confirm_digest(tag);
        let prefix = bucket(&digest, self.prefix_bits);
        self.bucket(prefix)
            .await
            .iter()
            .any(|other| other.as_slice() == digest)
    }

    /// Returns how many digests every confirm bucket of the region holds together.
    pub async fn count_digests(&mut self) -> usize {
        let mut total = 0;
        for prefix in 0..1u32 << self.prefix_bits {
            total += self.bucket(prefix).await.len();
        }
        total
    }
}

/// Returns the tags of a GAEN key as DESIGN §2–3 define them (the tests' reference code).
pub fn gaen_key_tags(
    key_data: &[u8],
    rolling_start: u32,
    rolling_period: u32,
) -> Vec<crate::reference::Tag> {
    let tek: [u8; 16] = key_data.try_into().expect("16-byte key");
    gaen_identifiers(&tek, rolling_start, rolling_period)
        .into_iter()
        .map(|(slot_start, rpi)| tag(SCHEME_GAEN, slot_start, &rpi))
        .collect()
}

/// Returns the filter key of every tag.
pub fn filter_keys(tags: &[crate::reference::Tag]) -> Vec<u64> {
    tags.iter().map(filter_key).collect()
}
