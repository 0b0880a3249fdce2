//! `gaen-inspect` and `gaen-export`: Google/Apple export zips (DESIGN §11) on the command line.
//!
//! `gaen-export` reads keys from a JSON file:
//!
//! ```json
//! {
//!   "keys": [
//!     {"key_data": "32 hex digits", "transmission_risk_level": 4,
//!      "rolling_start_interval_number": 2900000, "rolling_period": 144,
//!      "report_type": "CONFIRMED_TEST", "days_since_onset_of_symptoms": -2}
//!   ],
//!   "revised_keys": []
//! }
//! ```
//!
//! `report_type` is a name (CONFIRMED_TEST, CONFIRMED_CLINICAL_DIAGNOSIS, SELF_REPORT, REVOKED)
//! or its number; `transmission_risk_level` defaults to 0, `rolling_period` to 144, `report_type`
//! to CONFIRMED_TEST, and `days_since_onset_of_symptoms` may be left out; `revised_keys` may be
//! left out and are always written with report type REVOKED.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use clap::Args;
use exposure_matcher::BatchSigner;
use exposure_matcher::batch::public_key_der_from_pem;
use exposure_matcher::gaen::{
    DEFAULT_MIN_RECORDS, GaenExport, GaenExportKey, GaenExportParams, GaenReportType, GaenSigner,
    MAX_RECORDS_PER_FILE, build_gaen_exports,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

use crate::Failure;
use crate::input::read_text;

/// Arguments of `gaen-inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Export zip to read.
    file: PathBuf,
    /// Public key (PEM, "BEGIN PUBLIC KEY") to verify the signature with.
    #[arg(long, value_name = "PEM_FILE")]
    public_key: PathBuf,
    /// Also print every key, one per line: key_data hex, transmission risk, interval, period,
    /// report type, days since onset (or `-`), tab-separated; revised keys are prefixed `revised`.
    #[arg(long)]
    list_keys: bool,
}

/// Arguments of `gaen-export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Keys to export, as JSON (see `exposure-matcher gaen-export --help` and docs/OPERATIONS.md).
    #[arg(long, value_name = "JSON_FILE")]
    keys: PathBuf,
    /// Where to write the zip (more than 500,000 keys write `x.zip`, `x.2.zip`, ...).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// P-256 private key to sign with (PKCS#8 PEM, as `keygen` writes).
    #[arg(long, value_name = "PEM_FILE")]
    signing_key: PathBuf,
    /// Region written into the file.
    #[arg(long, value_name = "R", default_value = "VN")]
    region: String,
    /// verification_key_id the public key is registered under with Apple and Google.
    #[arg(long, value_name = "ID", default_value = "452")]
    key_id: String,
    /// verification_key_version the public key is registered under.
    #[arg(long, value_name = "V", default_value = "v1")]
    key_version: String,
    /// Pad a file of fewer keys with random keys to this many.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_RECORDS)]
    min_records: usize,
    /// Seed of the padding keys, for byte-identical fixtures [default: random].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// start_timestamp, Unix seconds [default: end - 3600].
    #[arg(long, value_name = "UNIX")]
    start: Option<u64>,
    /// end_timestamp, Unix seconds [default: now].
    #[arg(long, value_name = "UNIX")]
    end: Option<u64>,
}

/// Prints an export's header fields, key counts and signature status; fails on a malformed
/// file or a signature that does not verify.
pub fn inspect(args: &InspectArgs) -> Result<(), Failure> {
    let spki = public_key_der_from_pem(&read_text(&args.public_key)?)
        .with_context(|| format!("reading public key {}", args.public_key.display()))?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let parsed =
        GaenExport::parse(&bytes).with_context(|| format!("parsing {}", args.file.display()))?;
    let export = parsed.export();
    let mut lines = vec![
        ("size_bytes", bytes.len().to_string()),
        ("start_timestamp", optional(export.start_timestamp)),
        ("end_timestamp", optional(export.end_timestamp)),
        ("region", optional(export.region.clone())),
        ("batch_num", optional(export.batch_num)),
        ("batch_size", optional(export.batch_size)),
    ];
    for info in &export.signature_infos {
        lines.push((
            "signature_info",
            format!(
                "verification_key_id={} verification_key_version={} signature_algorithm={}",
                optional(info.verification_key_id.clone()),
                optional(info.verification_key_version.clone()),
                optional(info.signature_algorithm.clone()),
            ),
        ));
    }
    lines.push(("keys", export.keys.len().to_string()));
    lines.push(("revised_keys", export.revised_keys.len().to_string()));
    lines.push((
        "signatures",
        parsed.signatures().signatures.len().to_string(),
    ));
    let verified = parsed.verify(&spki);
    lines.push((
        "signature",
        match &verified {
            Ok(()) => "valid".to_owned(),
            Err(error) => format!("INVALID: {error}"),
        },
    ));
    let mut out = std::io::stdout().lock();
    for (name, value) in lines {
        writeln!(out, "{name}: {value}").context("writing to stdout")?;
    }
    if args.list_keys {
        let listed = export.keys.iter().map(|key| ("key", key));
        let revised = export.revised_keys.iter().map(|key| ("revised", key));
        for (label, key) in listed.chain(revised) {
            writeln!(
                out,
                "{label}\t{}\t{}\t{}\t{}\t{}\t{}",
                hex::encode(key.key_data.as_deref().unwrap_or_default()),
                optional(key.transmission_risk_level),
                optional(key.rolling_start_interval_number),
                optional(key.rolling_period),
                optional(key.report_type),
                optional(key.days_since_onset_of_symptoms),
            )
            .context("writing to stdout")?;
        }
    }
    verified
        .with_context(|| format!("verifying {}", args.file.display()))
        .map_err(Failure::Other)
}

/// Builds, signs and writes export zips from a JSON key list.
pub fn export(args: &ExportArgs) -> Result<(), Failure> {
    let signer = BatchSigner::from_pkcs8_pem(&read_text(&args.signing_key)?)
        .with_context(|| format!("reading signing key {}", args.signing_key.display()))?;
    let document: Value = serde_json::from_str(&read_text(&args.keys)?)
        .map_err(|error| Failure::Usage(format!("--keys is not JSON: {error}")))?;
    let keys = parse_key_list(&document, "keys")?;
    let revised_keys = parse_key_list(&document, "revised_keys")?;
    let end = args.end.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0)
    });
    let params = GaenExportParams {
        region: args.region.clone(),
        start_timestamp: args.start.unwrap_or(end.saturating_sub(3600)),
        end_timestamp: end,
        verification_key_id: args.key_id.clone(),
        min_records: args.min_records,
        max_records_per_file: MAX_RECORDS_PER_FILE,
    };
    let mut rng = match args.seed {
        Some(seed) => ChaCha20Rng::seed_from_u64(seed),
        None => ChaCha20Rng::from_entropy(),
    };
    let signers = [GaenSigner {
        signer: &signer,
        verification_key_version: &args.key_version,
    }];
    let files = build_gaen_exports(&params, &keys, &revised_keys, &signers, &mut rng)
        .map_err(|error| Failure::Usage(format!("--keys: {error}")))?;
    if files.is_empty() {
        return Err(Failure::Usage(
            "--keys holds no keys and no revised_keys".to_owned(),
        ));
    }
    for (index, file) in files.iter().enumerate() {
        let path = numbered_path(&args.out, index);
        std::fs::write(&path, &file.zip).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{}\t{} bytes\t{} keys\t{} revised\t{}",
            path.display(),
            file.zip.len(),
            file.key_count,
            file.revised_key_count,
            file.file_name()
        );
    }
    Ok(())
}

/// Returns `out` for the first file, `stem.N.ext` for file N ≥ 2.
fn numbered_path(out: &Path, index: usize) -> PathBuf {
    if index == 0 {
        return out.to_path_buf();
    }
    let stem = out.file_stem().unwrap_or_default().to_string_lossy();
    let extension = out.extension().unwrap_or_default().to_string_lossy();
    out.with_file_name(format!("{stem}.{}.{extension}", index + 1))
}

fn optional<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |value| value.to_string())
}

fn parse_key_list(document: &Value, field: &str) -> Result<Vec<GaenExportKey>, Failure> {
    let Some(list) = document.get(field) else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| Failure::Usage(format!("--keys: {field} must be an array")))?;
    list.iter()
        .enumerate()
        .map(|(index, entry)| {
            parse_key(entry)
                .map_err(|error| Failure::Usage(format!("--keys: {field}[{index}]: {error}")))
        })
        .collect()
}

fn parse_key(entry: &Value) -> anyhow::Result<GaenExportKey> {
    let key_hex = entry
        .get("key_data")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("key_data must be a string of 32 hex digits"))?;
    let key_data: [u8; 16] = hex::decode(key_hex)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| anyhow!("key_data must be 32 hex digits"))?;
    let integer = |name: &str, default: Option<i64>| -> anyhow::Result<i64> {
        match entry.get(name) {
            None | Some(Value::Null) => default.ok_or_else(|| anyhow!("{name} is required")),
            Some(value) => value
                .as_i64()
                .ok_or_else(|| anyhow!("{name} must be an integer")),
        }
    };
    let report_type = match entry.get("report_type") {
        None | Some(Value::Null) => GaenReportType::ConfirmedTest,
        Some(Value::String(name)) => report_type_by_name(name)?,
        Some(value) => value
            .as_i64()
            .and_then(|number| i32::try_from(number).ok())
            .and_then(GaenReportType::from_wire)
            .ok_or_else(|| anyhow!("report_type must be 1, 2, 3, 5 or a name"))?,
    };
    let onset = match entry.get("days_since_onset_of_symptoms") {
        None | Some(Value::Null) => None,
        Some(_) => Some(integer("days_since_onset_of_symptoms", None)?),
    };
    let narrow = |name: &str, value: i64| -> anyhow::Result<i32> {
        i32::try_from(value).map_err(|_| anyhow!("{name} is out of range"))
    };
    Ok(GaenExportKey {
        key_data,
        transmission_risk_level: narrow(
            "transmission_risk_level",
            integer("transmission_risk_level", Some(0))?,
        )?,
        rolling_start_interval_number: u32::try_from(integer(
            "rolling_start_interval_number",
            None,
        )?)
        .map_err(|_| anyhow!("rolling_start_interval_number is out of range"))?,
        rolling_period: u32::try_from(integer("rolling_period", Some(144))?)
            .map_err(|_| anyhow!("rolling_period is out of range"))?,
        report_type,
        days_since_onset_of_symptoms: onset
            .map(|days| narrow("days_since_onset_of_symptoms", days))
            .transpose()?,
    })
}

fn report_type_by_name(name: &str) -> anyhow::Result<GaenReportType> {
    match name {
        "CONFIRMED_TEST" => Ok(GaenReportType::ConfirmedTest),
        "CONFIRMED_CLINICAL_DIAGNOSIS" => Ok(GaenReportType::ConfirmedClinicalDiagnosis),
        "SELF_REPORT" => Ok(GaenReportType::SelfReport),
        "REVOKED" => Ok(GaenReportType::Revoked),
        other => Err(anyhow!("unknown report_type {other:?}")),
    }
}
