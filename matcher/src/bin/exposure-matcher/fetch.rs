//! `fetch`: what a phone does against the static layout (DESIGN.md section 10), from the key
//! server's HTTP listener or a CDN: read the region index, the day indexes it names, and download
//! every batch not yet in the output folder, verifying each against `v1/signing-keys` before it
//! is written. Hourly batches that a listed daily roll-up supersedes are skipped.
//!
//! The HTTP client (`ureq`, blocking, plain `http://`) lives only in this binary; the matcher
//! library has no network code. Bodies are decoded with the message definitions below, written
//! from `exposure.proto` field numbers: a second decoder beside the server's generated one.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use exposure_matcher::BatchFile;
use prost::Message;

use crate::Failure;

/// Largest body accepted (a batch file of the largest days is a few MB).
const MAX_BODY_BYTES: u64 = 256 * 1024 * 1024;

/// Arguments of `fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Root of the layout: the server's HTTP listener or a CDN, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    base_url: String,
    /// Region to fetch, e.g. VN-TB.
    #[arg(long, value_name = "R")]
    region: String,
    /// Folder the batch files are written to (named by batch id); created if missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// `RegionIndex` of exposure.proto.
#[derive(Clone, PartialEq, Message)]
struct RegionIndex {
    #[prost(uint64, tag = "1")]
    latest_sequence: u64,
    #[prost(uint32, tag = "2")]
    confirm_prefix_bits: u32,
    #[prost(uint32, repeated, tag = "3")]
    days: Vec<u32>,
}

/// The fields of `BatchInfo` a download needs.
#[derive(Clone, PartialEq, Message)]
struct BatchInfo {
    #[prost(string, tag = "1")]
    batch_id: String,
    #[prost(uint64, tag = "2")]
    sequence: u64,
    #[prost(int32, tag = "3")]
    kind: i32,
    #[prost(uint64, tag = "8")]
    size_bytes: u64,
    #[prost(string, tag = "9")]
    key_id: String,
    #[prost(uint64, repeated, tag = "10")]
    supersedes: Vec<u64>,
}

/// `ListBatchesResponse` (a day index).
#[derive(Clone, PartialEq, Message)]
struct DayIndex {
    #[prost(message, repeated, tag = "1")]
    batches: Vec<BatchInfo>,
}

/// `SigningKey`.
#[derive(Clone, PartialEq, Message)]
struct SigningKey {
    #[prost(string, tag = "1")]
    key_id: String,
    #[prost(bytes = "vec", tag = "2")]
    public_key_der: Vec<u8>,
    #[prost(string, tag = "3")]
    algorithm: String,
}

/// `GetSigningKeysResponse`.
#[derive(Clone, PartialEq, Message)]
struct SigningKeys {
    #[prost(message, repeated, tag = "1")]
    keys: Vec<SigningKey>,
}

/// Runs `fetch`.
pub fn run(args: &FetchArgs) -> Result<(), Failure> {
    let base = args.base_url.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(Failure::Usage(format!(
            "--base-url {base:?}: must start with http:// (this build has no TLS client; put the \
             server's HTTP listener or a plain-HTTP CDN edge here)"
        )));
    }
    if !is_region(&args.region) {
        return Err(Failure::Usage(format!(
            "--region {:?}: must match ^[A-Z]{{2}}(-[A-Z0-9]{{1,3}})?$, e.g. VN-TB",
            args.region
        )));
    }
    fetch(base, &args.region, &args.out).map_err(Failure::Other)
}

fn fetch(base: &str, region: &str, out: &Path) -> anyhow::Result<()> {
    let agent = ureq::Agent::new_with_defaults();
    let get = |path: &str| -> anyhow::Result<Vec<u8>> {
        let url = format!("{base}/{path}");
        let mut response = agent
            .get(&url)
            .call()
            .with_context(|| format!("GET {url}"))?;
        response
            .body_mut()
            .with_config()
            .limit(MAX_BODY_BYTES)
            .read_to_vec()
            .with_context(|| format!("reading the body of {url}"))
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    let keys = SigningKeys::decode(get("v1/signing-keys")?.as_slice())
        .context("v1/signing-keys does not decode")?;
    let keys: BTreeMap<String, Vec<u8>> = keys
        .keys
        .into_iter()
        .filter(|key| key.algorithm == "ecdsa-p256-sha256")
        .map(|key| (key.key_id, key.public_key_der))
        .collect();
    let index_path = format!("v1/regions/{region}/index");
    let index = RegionIndex::decode(get(&index_path)?.as_slice())
        .with_context(|| format!("{index_path} does not decode"))?;
    let mut batches = Vec::new();
    for day in &index.days {
        let path = format!("v1/regions/{region}/days/{day}");
        let listing = DayIndex::decode(get(&path)?.as_slice())
            .with_context(|| format!("{path} does not decode"))?;
        batches.extend(listing.batches);
    }
    batches.sort_by_key(|info| info.sequence);
    let superseded: HashSet<u64> = batches
        .iter()
        .flat_map(|info| info.supersedes.iter().copied())
        .collect();

    let mut stdout = std::io::stdout().lock();
    let (mut fetched, mut present, mut skipped, mut bytes) = (0, 0, 0, 0_u64);
    for info in &batches {
        if !is_batch_id(&info.batch_id) {
            bail!("day index lists a malformed batch id {:?}", info.batch_id);
        }
        let target = out.join(&info.batch_id);
        if target.exists() {
            present += 1;
            continue;
        }
        if superseded.contains(&info.sequence) {
            skipped += 1;
            continue;
        }
        let file = get(&format!("v1/batches/{}", info.batch_id))?;
        verify(&file, info, &keys)?;
        write_atomically(&target, &file)?;
        fetched += 1;
        bytes += file.len() as u64;
        writeln!(
            stdout,
            "fetched {} sequence {} {} {} bytes",
            info.batch_id,
            info.sequence,
            if info.kind == 2 { "daily" } else { "hourly" },
            file.len()
        )?;
    }
    writeln!(
        stdout,
        "region {region}: latest sequence {}, {} days, {fetched} batches fetched ({bytes} bytes), \
         {present} already present, {skipped} superseded",
        index.latest_sequence,
        index.days.len()
    )?;
    Ok(())
}

/// Checks that a downloaded file is the batch the index names and carries a valid signature of
/// a published key.
fn verify(file: &[u8], info: &BatchInfo, keys: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
    let batch = BatchFile::parse(file)
        .with_context(|| format!("batch {} does not parse", info.batch_id))?;
    if batch.batch_id() != info.batch_id {
        bail!(
            "batch {}: the body hashes to {}, not to its name",
            info.batch_id,
            batch.batch_id()
        );
    }
    if file.len() as u64 != info.size_bytes {
        bail!(
            "batch {}: {} bytes, the index says {}",
            info.batch_id,
            file.len(),
            info.size_bytes
        );
    }
    let Some(public_key) = keys.get(batch.key_id()) else {
        bail!(
            "batch {}: signed by key {:?}, which v1/signing-keys does not list",
            info.batch_id,
            batch.key_id()
        );
    };
    batch
        .verify(public_key)
        .with_context(|| format!("batch {}: signature does not verify", info.batch_id))?;
    Ok(())
}

/// Writes `bytes` to a temporary file beside `target`, then renames it, so an interrupted fetch
/// never leaves a partial batch under its final name.
fn write_atomically(target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = target.with_extension("partial");
    std::fs::write(&partial, bytes).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, target).with_context(|| format!("renaming to {}", target.display()))
}

/// Returns true for a region code as the server accepts it.
fn is_region(region: &str) -> bool {
    let bytes = region.as_bytes();
    let country = bytes.len() >= 2 && bytes[..2].iter().all(u8::is_ascii_uppercase);
    match bytes.len() {
        2 => country,
        4..=6 => {
            country
                && bytes[2] == b'-'
                && bytes[3..]
                    .iter()
                    .all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
        }
        _ => false,
    }
}

/// Returns true for a lowercase hex SHA-256 (also what makes it safe as a file name).
fn is_batch_id(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}
