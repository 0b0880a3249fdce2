//! `exposure-loadtest demo`: the whole life of one case, told step by step for a newcomer.
//!
//! 1. fetch the server's signing keys; 2. note where the region's listing stands; 3. staff
//!    issue a one-time upload code with the authority's token, and the patient's phone uploads
//!    its GAEN key for yesterday with that code (DESIGN.md section 12; a key whose slots have
//!    all ended, so that it becomes publishable once the server's `--release-delay` has
//!    passed); 4. poll `ListBatches` until a
//!    batch holding the case appears (bounded by `--wait`); 5. download it; 6. verify its
//!    signature; 7. match two phones against it, one that heard the case and one that did not;
//!    8. fetch the confirm bucket of each filter hit and confirm exactly; with `--http`, also
//!    find the case's key in the region's Google/Apple export file (DESIGN §11).
//!
//! Nothing secret is printed: not the token, not the code, not the key, not the identifiers.

use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context as _;
use exposure_client::calls::{UploadCredential, issue_codes};
use exposure_client::credential::UploadCode;
use exposure_matcher::{
    BatchFile, ConfirmDigest, GAEN_INTERVAL_SECONDS, ObservationStore, Scheme, Tag,
};
use exposure_proto::v1::{
    GetBatchRequest, GetSigningKeysRequest, ListBatchesRequest, ReportType, SigningKey,
    UploadDiagnosisKeysRequest, diagnosis_key,
};
use rand::RngCore as _;

use crate::client::{BearerToken, Clients, Connections};
use crate::scenario::catalog::Catalog;
use crate::scenario::upload::{self, random_daily_key};
use crate::target::Target;

/// How often the demo polls for the case's batch.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// The interval of yesterday's key that the exposed phone heard: number 72, noon UTC.
const HEARD_INTERVAL: usize = 72;

/// What the demo needs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The server.
    pub target: Target,
    /// A health authority's token for `region`.
    pub token: BearerToken,
    /// The case's region.
    pub region: String,
    /// How long to wait for the publisher at most.
    pub wait: Duration,
    /// The server's HTTP listener, where the GAEN export files are read; `None` skips them.
    pub http: Option<Target>,
}

impl DemoOptions {
    /// Bundles the demo's options.
    pub fn new(target: Target, token: BearerToken, region: &str, wait: Duration) -> Self {
        DemoOptions {
            target,
            token,
            region: region.to_owned(),
            wait,
            http: None,
        }
    }

    /// Also shows the case's GAEN export file, read from the HTTP listener at `http`.
    #[must_use]
    pub fn with_http(mut self, http: Option<Target>) -> Self {
        self.http = http;
        self
    }
}

/// What the demo found, for tests and scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoOutcome {
    /// Id of the case's batch.
    pub batch_id: String,
    /// Its sequence number.
    pub batch_sequence: u64,
    /// Its size in bytes.
    pub batch_bytes: usize,
    /// Id of the key whose signature was verified.
    pub signing_key_id: String,
    /// Filter hits of the phone that heard the case.
    pub exposed_phone_hits: usize,
    /// True when one of them was confirmed exactly.
    pub exposed_phone_confirmed: bool,
    /// Filter hits of the phone that did not hear the case (false positives, usually none).
    pub other_phone_hits: usize,
    /// True if one of those was confirmed (never, unless the server is wrong).
    pub other_phone_confirmed: bool,
    /// Path of the GAEN export file that lists the case's key, when `--http` was given.
    pub gaen_file: Option<String>,
}

/// Runs the demo against `options.target`, telling each step on `out`.
pub async fn run_demo(
    options: &DemoOptions,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<DemoOutcome> {
    let region = options.region.as_str();
    writeln!(
        out,
        "exposure-loadtest demo: one case's story against {}, region {region}\n",
        options.target
    )?;
    let connections = Connections::open(&options.target, 1).await?;
    let mut clients = Clients::new(connections.channel(0));

    // 1. Signing keys.
    let signing_keys = signing_keys(&mut clients).await?;
    let current = signing_keys
        .first()
        .context("the server lists no signing key")?;
    writeln!(
        out,
        "[1/8] Signing keys: batches are signed with key {} ({}).",
        current.key_id, current.algorithm
    )?;

    // 2. Where the listing stands.
    let catalog = Catalog::load(&mut clients.distribution, region).await?;
    let cursor = catalog.latest_sequence();
    let prefix_bits = catalog.confirm_prefix_bits();
    writeln!(
        out,
        "[2/8] Listing: region {region} is at batch sequence {cursor}; confirm buckets use {prefix_bits}-bit prefixes."
    )?;

    // 3. Staff issue a code; the patient's phone uploads with it.
    let issued = issue_codes(
        &mut clients.upload,
        &options.token,
        region,
        1,
        ReportType::ConfirmedTest,
        Duration::from_secs(24 * 3600),
    )
    .await
    .context("staff could not issue an upload code")?;
    let code = issued.first().context("the server issued no code")?;
    let expires_at = code.expires_at;
    let code = UploadCode::new(&code.code).context("the server issued a code that is not one")?;
    let yesterday = upload::today().saturating_sub(1);
    let proto_key = random_daily_key(&mut rand::thread_rng(), yesterday);
    let upload_id = format!("demo-{:016x}", rand::thread_rng().next_u64());
    let request = UploadDiagnosisKeysRequest {
        region: region.to_owned(),
        upload_id: upload_id.clone(),
        keys: vec![proto_key.clone()],
        report_type: ReportType::ConfirmedTest as i32,
        padding: Vec::new(),
    };
    let answer =
        exposure_client::calls::upload(&mut clients.upload, &UploadCredential::Code(code), request)
            .await
            .context("the phone's upload was refused")?;
    let case_key = matcher_key(&proto_key)?;
    let identifiers = case_key
        .identifiers()
        .context("the case's key does not expand")?;
    let heard = identifiers
        .get(HEARD_INTERVAL)
        .context("the case's key has no interval 72")?;
    let last_slot_end = case_key.last_slot_end();
    writeln!(
        out,
        "[3/8] Upload: staff issued a one-time upload code (valid until {}) and handed it to the patient;\n      the patient's phone uploaded its GAEN key for {} (144 ten-minute intervals) with it (authorization: UploadCode) as upload {upload_id}:\n      {} key accepted, durably stored, and the code consumed in the same write.\n      The server holds it until --release-delay after its last slot ended ({}).",
        time_text(expires_at),
        day_text(yesterday),
        answer.keys_accepted,
        time_text(last_slot_end),
    )?;

    // 4. Wait for the batch that holds the case.
    let case_tag = Tag::compute(Scheme::Gaen, heard.slot_start, &heard.identifier);
    writeln!(
        out,
        "[4/8] Waiting for the publisher (polling ListBatches after sequence {cursor} every {} ms, up to {})...",
        POLL_EVERY.as_millis(),
        humantime::format_duration(options.wait)
    )?;
    let waited_from = Instant::now();
    let found = wait_for_case(&mut clients, region, cursor, &case_tag, options.wait).await?;
    let Some((info_sequence, batch_id, bytes, chunks)) = found else {
        anyhow::bail!(
            "no batch holding the case appeared within {}. The server publishes every --publish-interval (default 1h) and only keys whose last slot ended at least --release-delay (default 2h) ago; for the demo, start it with e.g. --publish-interval 2s --release-delay 0s, or pass a longer --wait",
            humantime::format_duration(options.wait)
        );
    };
    writeln!(
        out,
        "      batch #{info_sequence} appeared after {:.1} s.",
        waited_from.elapsed().as_secs_f64()
    )?;

    // 5. Download.
    let batch = BatchFile::parse(&bytes).context("the downloaded batch does not parse")?;
    anyhow::ensure!(
        batch.batch_id() == batch_id,
        "the batch's content does not hash to its id"
    );
    let header = batch.header();
    writeln!(
        out,
        "[5/8] Download: GetBatch streamed {} bytes in {chunks} chunk(s); SHA-256 of the body equals its id {}…; {} filter elements, {:.2} bits each.",
        bytes.len(),
        &batch_id[..batch_id.len().min(16)],
        header.element_count,
        header.bits_per_element(),
    )?;

    // 6. Verify the signature.
    let signer = signing_keys
        .iter()
        .find(|key| key.key_id == batch.key_id())
        .with_context(|| {
            format!(
                "the batch names signing key {} that GetSigningKeys does not list",
                batch.key_id()
            )
        })?;
    batch
        .verify(&signer.public_key_der)
        .context("the batch signature does not verify")?;
    writeln!(
        out,
        "[6/8] Verify: the ECDSA P-256 signature by key {} over the body is valid.",
        signer.key_id
    )?;

    // 7. Match two phones.
    let observed_at = heard.slot_start + GAEN_INTERVAL_SECONDS / 2;
    let mut exposed_phone = ObservationStore::new();
    exposed_phone.observe(
        Scheme::Gaen,
        &heard.identifier,
        observed_at,
        GAEN_INTERVAL_SECONDS,
    )?;
    let mut stranger = [0_u8; 16];
    rand::thread_rng().fill_bytes(&mut stranger);
    let mut other_phone = ObservationStore::new();
    other_phone.observe(Scheme::Gaen, &stranger, observed_at, GAEN_INTERVAL_SECONDS)?;
    let exposed_hits = exposed_phone.match_batch(&batch);
    let other_hits = other_phone.match_batch(&batch);
    writeln!(
        out,
        "[7/8] Match: phone A heard the case at {} and phone B heard only a stranger; each looked up its slot and the two neighbours ({} lookups).\n      phone A: {} filter hit(s); phone B: {} filter hit(s).",
        time_text(observed_at),
        exposed_phone.tags().len(),
        exposed_hits.len(),
        other_hits.len(),
    )?;

    // 8. Confirm.
    let mut exposed_confirmed = false;
    for candidate in &exposed_hits {
        let prefix = candidate.bucket_prefix(prefix_bits);
        let bucket = confirm_bucket(&mut clients, region, prefix, prefix_bits).await?;
        let confirmed = exposure_matcher::confirm(candidate.digest, &bucket);
        exposed_confirmed |= confirmed;
        writeln!(
            out,
            "[8/8] Confirm: phone A fetched bucket {prefix:#x} (the first {prefix_bits} bits of its digest; {} digest(s) in it, hundreds at province scale, so the server cannot tell which one the phone holds): {}.",
            bucket.len(),
            if confirmed {
                "its digest is there, exposure CONFIRMED"
            } else {
                "its digest is not there, a false filter hit"
            },
        )?;
    }
    if exposed_hits.is_empty() {
        writeln!(
            out,
            "[8/8] Confirm: phone A had no filter hit, so nothing to confirm."
        )?;
    }
    let mut other_confirmed = false;
    for candidate in &other_hits {
        let prefix = candidate.bucket_prefix(prefix_bits);
        let bucket = confirm_bucket(&mut clients, region, prefix, prefix_bits).await?;
        let confirmed = exposure_matcher::confirm(candidate.digest, &bucket);
        other_confirmed |= confirmed;
        writeln!(
            out,
            "      phone B's false filter hit: bucket {prefix:#x} ({} digests) {}.",
            bucket.len(),
            if confirmed {
                "CONFIRMS it (this is a bug)"
            } else {
                "does not hold its digest, no alert"
            }
        )?;
    }
    if other_hits.is_empty() {
        writeln!(
            out,
            "      phone B: no filter hit, nothing to fetch, no alert."
        )?;
    }
    writeln!(
        out,
        "\nResult: phone A {} alerted; phone B {} alerted. The server never learned which phone heard what.",
        if exposed_confirmed { "is" } else { "is NOT" },
        if other_confirmed { "IS" } else { "is not" },
    )?;
    let gaen_file = match &options.http {
        Some(http) => {
            let key_data = match proto_key.key.as_ref() {
                Some(diagnosis_key::Key::Gaen(gaen)) => gaen.key_data.clone(),
                _ => Vec::new(),
            };
            Some(
                crate::demo_gaen::show_export(
                    http,
                    region,
                    &key_data,
                    &signer.public_key_der,
                    options.wait,
                    out,
                )
                .await?,
            )
        }
        None => {
            writeln!(
                out,
                "(Pass --http URL, the server's HTTP listener, to also see the case in its Google/Apple export file.)"
            )?;
            None
        }
    };
    out.flush()?;

    Ok(DemoOutcome {
        batch_id,
        batch_sequence: info_sequence,
        batch_bytes: bytes.len(),
        signing_key_id: signer.key_id.clone(),
        exposed_phone_hits: exposed_hits.len(),
        exposed_phone_confirmed: exposed_confirmed,
        other_phone_hits: other_hits.len(),
        other_phone_confirmed: other_confirmed,
        gaen_file,
    })
}

/// Returns the server's signing keys, current first.
async fn signing_keys(clients: &mut Clients) -> anyhow::Result<Vec<SigningKey>> {
    let response = clients
        .distribution
        .get_signing_keys(GetSigningKeysRequest {})
        .await
        .context("cannot fetch the signing keys")?;
    Ok(response.into_inner().keys)
}

/// A downloaded batch: sequence, id, file bytes, chunks received.
type FoundBatch = (u64, String, Vec<u8>, usize);

/// Polls for batches after `cursor` until one holds `case_tag` or `wait` has passed.
async fn wait_for_case(
    clients: &mut Clients,
    region: &str,
    mut cursor: u64,
    case_tag: &Tag,
    wait: Duration,
) -> anyhow::Result<Option<FoundBatch>> {
    let deadline = Instant::now() + wait;
    loop {
        let request = ListBatchesRequest {
            region: region.to_owned(),
            after_sequence: cursor,
            limit: 0,
        };
        let listing = clients
            .distribution
            .list_batches(request)
            .await
            .context("cannot list batches")?
            .into_inner();
        for info in &listing.batches {
            let (bytes, chunks) = fetch_batch(clients, &info.batch_id).await?;
            let batch = BatchFile::parse(&bytes)
                .with_context(|| format!("batch #{} does not parse", info.sequence))?;
            if batch.contains(case_tag) {
                return Ok(Some((info.sequence, info.batch_id.clone(), bytes, chunks)));
            }
            cursor = cursor.max(info.sequence);
        }
        if listing.more {
            continue;
        }
        if Instant::now() + POLL_EVERY > deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Downloads a whole batch file; returns its bytes and the number of chunks.
async fn fetch_batch(clients: &mut Clients, batch_id: &str) -> anyhow::Result<(Vec<u8>, usize)> {
    let mut stream = clients
        .distribution
        .get_batch(GetBatchRequest {
            batch_id: batch_id.to_owned(),
        })
        .await
        .with_context(|| format!("cannot download batch {batch_id}"))?
        .into_inner();
    let mut bytes = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("batch {batch_id} stream failed"))?
    {
        anyhow::ensure!(
            chunk.offset == bytes.len() as u64,
            "batch {batch_id}: chunk at offset {} after {} bytes",
            chunk.offset,
            bytes.len()
        );
        bytes.extend_from_slice(&chunk.data);
        chunks += 1;
    }
    Ok((bytes, chunks))
}

/// Fetches one confirm bucket as digests, in the server's (sorted) order.
async fn confirm_bucket(
    clients: &mut Clients,
    region: &str,
    prefix: u32,
    prefix_bits: u32,
) -> anyhow::Result<Vec<ConfirmDigest>> {
    let mut digests: Vec<ConfirmDigest> =
        crate::scenario::confirm::fetch(clients, region, prefix, prefix_bits)
            .await
            .context("cannot fetch the confirm bucket")?
            .digests
            .iter()
            .filter_map(|digest| {
                <[u8; 16]>::try_from(digest.as_slice())
                    .ok()
                    .map(ConfirmDigest)
            })
            .collect();
    // The API promises sorted digests; sorting again costs nothing at bucket sizes.
    digests.sort_unstable();
    Ok(digests)
}

/// Converts the uploaded key into the matcher's, to expand it the way the server does.
fn matcher_key(
    key: &exposure_proto::v1::DiagnosisKey,
) -> anyhow::Result<exposure_matcher::DiagnosisKey> {
    let Some(diagnosis_key::Key::Gaen(gaen)) = &key.key else {
        anyhow::bail!("the demo uploads GAEN keys only");
    };
    let key_data =
        <[u8; 16]>::try_from(gaen.key_data.as_slice()).context("GAEN keys are 16 bytes")?;
    Ok(exposure_matcher::DiagnosisKey::Gaen(
        exposure_matcher::GaenKey {
            key_data,
            rolling_start_interval_number: gaen.rolling_start_interval_number,
            rolling_period: gaen.rolling_period,
        },
    ))
}

fn time_text(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

fn day_text(day: u32) -> String {
    let text = time_text(u64::from(day) * 86_400);
    text.split('T').next().unwrap_or(&text).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc() {
        assert_eq!(time_text(1_585_785_600), "2020-04-02T00:00:00Z");
        assert_eq!(day_text(20_454), "2026-01-01");
    }

    #[test]
    fn uploaded_key_expands_like_the_server_would() {
        let proto_key = random_daily_key(&mut rand::thread_rng(), 20_454);
        let key = matcher_key(&proto_key).expect("GAEN");
        let identifiers = key.identifiers().expect("expands");
        assert_eq!(identifiers.len(), 144);
        assert_eq!(
            identifiers[HEARD_INTERVAL].slot_start,
            20_454 * 86_400 + 72 * 600
        );
        assert_eq!(key.last_slot_end(), 20_455 * 86_400);
    }
}
