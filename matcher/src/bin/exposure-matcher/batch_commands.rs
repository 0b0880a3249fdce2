//! `inspect`, `check`, `build` and `keygen`: the batch-file subcommands (DESIGN §4).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use exposure_matcher::batch::{build_batch_from_filter_keys, public_key_der_from_pem};
use exposure_matcher::{BatchFile, BatchKind, BatchParams, BatchSigner, FingerprintWidth};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::Failure;
use crate::input::{read_tag_lines, read_text};

/// Kind of batch to build.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    /// An hourly batch.
    Hourly,
    /// A daily roll-up.
    Daily,
}

/// Arguments of `build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Tags to put in the batch: one per line, as 64 hex digits or as `derive` output lines
    /// (whose slot starts then set slot_min and slot_max; bare tags leave them 0).
    #[arg(long, value_name = "FILE")]
    tags: PathBuf,
    /// Where to write the batch file.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Region of the batch, 1..=32 printable ASCII characters (e.g. VN-TB).
    #[arg(long, value_name = "R")]
    region: String,
    /// P-256 private key to sign with (PKCS#8 PEM, as `keygen` writes).
    #[arg(long, value_name = "PEM_FILE")]
    signing_key: PathBuf,
    /// Fingerprint width in bits: 8, 16 or 32.
    #[arg(long, value_name = "BITS", default_value_t = 16)]
    fingerprint: u32,
    /// Pad the filter with random decoy keys up to this many elements (the server's default).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    min_elements: usize,
    /// Sequence number of the batch.
    #[arg(long, value_name = "N", default_value_t = 1)]
    sequence: u64,
    /// Hourly batch or daily roll-up.
    #[arg(long, value_enum, default_value_t = KindArg::Hourly)]
    kind: KindArg,
    /// created_at, Unix seconds [default: now].
    #[arg(long, value_name = "UNIX")]
    created_at: Option<u64>,
    /// Seed for the decoy keys, for byte-identical fixtures [default: random].
    #[arg(long, value_name = "N")]
    decoy_seed: Option<u64>,
}

/// Prints the header, size figures and signature status of a batch file.
pub fn inspect(file: &Path, public_key: Option<&Path>) -> Result<(), Failure> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let batch = BatchFile::parse(&bytes).with_context(|| format!("parsing {}", file.display()))?;
    let header = batch.header();
    let signature_status = match public_key {
        None => Ok("not checked (no --public-key)".to_owned()),
        Some(path) => {
            let spki = public_key_der_from_pem(&read_text(path)?)
                .with_context(|| format!("reading public key {}", path.display()))?;
            match batch.verify(&spki) {
                Ok(()) => Ok("valid".to_owned()),
                Err(error) => Err(format!("INVALID: {error}")),
            }
        }
    };
    let lines = [
        ("batch_id", batch.batch_id()),
        ("size_bytes", bytes.len().to_string()),
        ("version", header.version.to_string()),
        (
            "filter_kind",
            format!(
                "{} ({}-bit fingerprints)",
                header.filter_kind.filter_kind(),
                header.filter_kind.bits()
            ),
        ),
        ("region", header.region.clone()),
        ("sequence", header.sequence.to_string()),
        (
            "kind",
            format!("{} ({})", header.kind.byte(), header.kind.name()),
        ),
        ("created_at", header.created_at.to_string()),
        ("slot_min", header.slot_min.to_string()),
        ("slot_max", header.slot_max.to_string()),
        ("element_count", header.element_count.to_string()),
        ("seed", header.seed.to_string()),
        ("segment_length", header.segment_length.to_string()),
        (
            "segment_length_mask",
            header.segment_length_mask.to_string(),
        ),
        (
            "segment_count_length",
            header.segment_count_length.to_string(),
        ),
        ("fingerprint_count", header.fingerprint_count.to_string()),
        (
            "bits_per_element",
            format!("{:.3}", header.bits_per_element()),
        ),
        ("key_id", batch.key_id().to_owned()),
        (
            "signature",
            signature_status.clone().unwrap_or_else(|message| message),
        ),
    ];
    let mut out = std::io::stdout().lock();
    for (name, value) in lines {
        writeln!(out, "{name}: {value}").context("writing to stdout")?;
    }
    signature_status
        .map(drop)
        .map_err(|message| Failure::Other(anyhow::anyhow!("signature {message}")))
}

/// Prints the listed tags that the batch contains, in list order; a summary goes to stderr.
pub fn check(file: &Path, tags: &Path, public_key: Option<&Path>) -> Result<(), Failure> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let batch = BatchFile::parse(&bytes).with_context(|| format!("parsing {}", file.display()))?;
    if let Some(path) = public_key {
        let spki = public_key_der_from_pem(&read_text(path)?)
            .with_context(|| format!("reading public key {}", path.display()))?;
        batch
            .verify(&spki)
            .with_context(|| format!("verifying {}", file.display()))?;
    }
    let tag_lines = read_tag_lines(tags)?;
    let mut out = std::io::stdout().lock();
    let mut found = 0usize;
    for line in &tag_lines {
        if batch.contains(&line.tag) {
            found += 1;
            writeln!(out, "{}", line.tag).context("writing to stdout")?;
        }
    }
    eprintln!(
        "{found} of {} tags in batch {}",
        tag_lines.len(),
        batch.batch_id()
    );
    Ok(())
}

/// Builds, signs and writes a batch from a tag list.
pub fn build(args: &BuildArgs) -> Result<(), Failure> {
    let width = FingerprintWidth::from_bits(args.fingerprint).ok_or_else(|| {
        Failure::Usage(format!(
            "--fingerprint must be 8, 16 or 32, got {}",
            args.fingerprint
        ))
    })?;
    let signer = BatchSigner::from_pkcs8_pem(&read_text(&args.signing_key)?)
        .with_context(|| format!("reading signing key {}", args.signing_key.display()))?;
    let tag_lines = read_tag_lines(&args.tags)?;
    let slot_range =
        tag_lines
            .iter()
            .filter_map(|line| line.slot_start)
            .fold(None, |range, slot| {
                Some(match range {
                    None => (slot, slot),
                    Some((low, high)) => (u64::min(low, slot), u64::max(high, slot)),
                })
            });
    let created_at = match args.created_at {
        Some(created_at) => created_at,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
    };
    let params = BatchParams {
        region: args.region.clone(),
        sequence: args.sequence,
        kind: match args.kind {
            KindArg::Hourly => BatchKind::Hourly,
            KindArg::Daily => BatchKind::Daily,
        },
        created_at,
        width,
        min_elements: args.min_elements,
    };
    let mut rng = match args.decoy_seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_entropy(),
    };
    let filter_keys = tag_lines.iter().map(|line| line.tag.filter_key()).collect();
    let built = build_batch_from_filter_keys(&params, filter_keys, slot_range, &signer, &mut rng)
        .map_err(|error| match error {
        exposure_matcher::BatchError::InvalidRegion(_) => {
            Failure::Usage(format!("--region: {error}"))
        }
        other => Failure::Other(other.into()),
    })?;
    std::fs::write(&args.out, &built.bytes)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{}\t{} bytes\t{} elements ({} real)\tkey_id {}",
        built.batch_id,
        built.bytes.len(),
        built.element_count,
        built.real_elements,
        signer.key_id()
    );
    Ok(())
}

/// Writes a fresh private key to `out` (never overwriting) and prints its public key PEM.
pub fn keygen(out: &Path) -> Result<(), Failure> {
    let signer = BatchSigner::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.write_all(signer.to_pkcs8_pem().as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    print!("{}", signer.public_key_pem());
    eprintln!("key_id {}", signer.key_id());
    Ok(())
}
