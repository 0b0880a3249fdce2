//! Building export files: pad a small run, sort the keys, split them into files, encode
//! `export.bin`, sign it with every key in service, and zip it with `export.sig` (DESIGN §11).

use prost::Message;
use rand::{Rng, RngCore};

use super::archive::write_zip;
use super::proto::{
    SignatureInfo, TekSignature, TekSignatureList, TemporaryExposureKey, TemporaryExposureKeyExport,
};
use super::{EXPORT_HEADER, GaenError, SIGNATURE_ALGORITHM_OID};
use crate::batch::BatchSigner;

/// How a case was diagnosed: the `report_type` of an exported key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GaenReportType {
    /// A positive laboratory test.
    ConfirmedTest = 1,
    /// A clinical diagnosis without a test.
    ConfirmedClinicalDiagnosis = 2,
    /// The patient's own report.
    SelfReport = 3,
    /// An earlier report was withdrawn; only in `revised_keys`.
    Revoked = 5,
}

impl GaenReportType {
    /// Returns the type of a wire value, or `None` for 0, 4 (recursive) or an unknown one.
    pub fn from_wire(value: i32) -> Option<GaenReportType> {
        match value {
            1 => Some(GaenReportType::ConfirmedTest),
            2 => Some(GaenReportType::ConfirmedClinicalDiagnosis),
            3 => Some(GaenReportType::SelfReport),
            5 => Some(GaenReportType::Revoked),
            _ => None,
        }
    }
}

/// One key to export, as the frameworks see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaenExportKey {
    /// The 16-byte temporary exposure key.
    pub key_data: [u8; 16],
    /// Transmission risk level, 0..=8.
    pub transmission_risk_level: i32,
    /// First 10-minute interval the key was valid.
    pub rolling_start_interval_number: u32,
    /// Number of intervals it was valid, 1..=144.
    pub rolling_period: u32,
    /// Report type of its upload (REVOKED for revised keys).
    pub report_type: GaenReportType,
    /// Days from symptom onset to the key's interval, -14..=14, when known.
    pub days_since_onset_of_symptoms: Option<i32>,
}

/// What every file of one export run shares.
#[derive(Clone, Debug)]
pub struct GaenExportParams {
    /// Region of the keys.
    pub region: String,
    /// Start of the publish window, Unix seconds.
    pub start_timestamp: u64,
    /// End of the publish window, Unix seconds; file `i` of the run ends at `end + i`, so every
    /// file has a distinct end timestamp (iOS accepts only batches of one file).
    pub end_timestamp: u64,
    /// `verification_key_id` the public keys are registered under (default "452").
    pub verification_key_id: String,
    /// A run of fewer keys is padded with random keys to this many (the server pads with its
    /// synthetic keys instead and gives 0).
    pub min_records: usize,
    /// Most keys and revised keys one file holds together (default 500,000).
    pub max_records_per_file: usize,
}

/// A key that signs export files, with the `verification_key_version` it is registered under.
#[derive(Clone, Copy, Debug)]
pub struct GaenSigner<'a> {
    /// The private key.
    pub signer: &'a BatchSigner,
    /// Its `verification_key_version` (default "v1").
    pub verification_key_version: &'a str,
}

/// Most signatures one file carries (the frameworks read at most 10 `SignatureInfo`s).
pub const MAX_SIGNERS: usize = 10;

/// One signed export zip.
#[derive(Clone, Debug)]
pub struct GaenExportFile {
    /// The file's `start_timestamp`.
    pub start_timestamp: u64,
    /// The file's `end_timestamp`.
    pub end_timestamp: u64,
    /// Keys in the file, padding included.
    pub key_count: usize,
    /// Revised (revoked) keys in the file.
    pub revised_key_count: usize,
    /// The zip bytes.
    pub zip: Vec<u8>,
}

impl GaenExportFile {
    /// Returns the file's name: `{start}-{end}-00001.zip`.
    pub fn file_name(&self) -> String {
        format!("{}-{}-00001.zip", self.start_timestamp, self.end_timestamp)
    }
}

/// Returns the export files of one run, each signed by every one of `signers`, in their order
/// (the server gives the current key first; during a rotation's overlap the next key signs
/// too, DESIGN §15).
///
/// As the reference server does it: a run of fewer than `min_records` keys is padded first,
/// with random key data copying a random real key's metadata (a run of revisions only has
/// nothing to copy and is not padded); then the keys are sorted by key data and split into
/// files of at most `max_records_per_file` keys and revised keys together, revised keys
/// (written with report type REVOKED) first. A padded run fits one file (padding stops at the
/// file's room), so a split's files are never padded. No keys and no revised keys make no
/// file. The same inputs and RNG state always give the same bytes.
pub fn build_gaen_exports(
    params: &GaenExportParams,
    keys: &[GaenExportKey],
    revised_keys: &[GaenExportKey],
    signers: &[GaenSigner<'_>],
    rng: &mut impl RngCore,
) -> Result<Vec<GaenExportFile>, GaenError> {
    for key in keys.iter().chain(revised_keys) {
        check_key(key)?;
    }
    if params.max_records_per_file == 0 {
        return Err(GaenError::InvalidKey(
            "max_records_per_file must be at least 1",
        ));
    }
    if signers.is_empty() || signers.len() > MAX_SIGNERS {
        return Err(GaenError::InvalidKey("signers must be 1 to 10 keys"));
    }
    let mut revised: Vec<TemporaryExposureKey> = revised_keys
        .iter()
        .map(|key| {
            to_proto(&GaenExportKey {
                report_type: GaenReportType::Revoked,
                ..key.clone()
            })
        })
        .collect();
    revised.sort_by(|left, right| left.key_data.cmp(&right.key_data));
    let mut all: Vec<TemporaryExposureKey> = keys.iter().map(to_proto).collect();
    let room = params.max_records_per_file.saturating_sub(revised.len());
    let target = params.min_records.min(room);
    while !keys.is_empty() && all.len() < target {
        let template = &keys[rng.gen_range(0..keys.len())];
        let mut key_data = [0u8; 16];
        rng.fill_bytes(&mut key_data);
        all.push(to_proto(&GaenExportKey {
            key_data,
            ..template.clone()
        }));
    }
    all.sort_by(|left, right| left.key_data.cmp(&right.key_data));

    let mut revised = revised.into_iter().peekable();
    let mut keys = all.into_iter().peekable();
    let mut files = Vec::new();
    while revised.peek().is_some() || keys.peek().is_some() {
        let revised_here: Vec<_> = revised.by_ref().take(params.max_records_per_file).collect();
        let keys_here: Vec<_> = keys
            .by_ref()
            .take(params.max_records_per_file - revised_here.len())
            .collect();
        let end_timestamp = params.end_timestamp + files.len() as u64;
        files.push(build_file(
            params,
            end_timestamp,
            keys_here,
            revised_here,
            signers,
        )?);
    }
    Ok(files)
}

fn build_file(
    params: &GaenExportParams,
    end_timestamp: u64,
    keys: Vec<TemporaryExposureKey>,
    revised_keys: Vec<TemporaryExposureKey>,
    signers: &[GaenSigner<'_>],
) -> Result<GaenExportFile, GaenError> {
    let signature_infos: Vec<SignatureInfo> = signers
        .iter()
        .map(|signer| SignatureInfo {
            verification_key_version: Some(signer.verification_key_version.to_owned()),
            verification_key_id: Some(params.verification_key_id.clone()),
            signature_algorithm: Some(SIGNATURE_ALGORITHM_OID.to_owned()),
        })
        .collect();
    let key_count = keys.len();
    let revised_key_count = revised_keys.len();
    let export = TemporaryExposureKeyExport {
        start_timestamp: Some(params.start_timestamp),
        end_timestamp: Some(end_timestamp),
        region: Some(params.region.clone()),
        batch_num: Some(1),
        batch_size: Some(1),
        signature_infos: signature_infos.clone(),
        keys,
        revised_keys,
    };
    let mut export_bin = Vec::with_capacity(EXPORT_HEADER.len() + export.encoded_len());
    export_bin.extend_from_slice(EXPORT_HEADER);
    export
        .encode(&mut export_bin)
        .map_err(|error| GaenError::Write(error.to_string()))?;
    let signature_list = TekSignatureList {
        signatures: signers
            .iter()
            .zip(signature_infos)
            .map(|(signer, signature_info)| TekSignature {
                signature_info: Some(signature_info),
                batch_num: Some(1),
                batch_size: Some(1),
                signature: Some(signer.signer.sign(&export_bin)),
            })
            .collect(),
    };
    let zip = write_zip(&export_bin, &signature_list.encode_to_vec())?;
    Ok(GaenExportFile {
        start_timestamp: params.start_timestamp,
        end_timestamp,
        key_count,
        revised_key_count,
        zip,
    })
}

fn check_key(key: &GaenExportKey) -> Result<(), GaenError> {
    if !(0..=8).contains(&key.transmission_risk_level) {
        return Err(GaenError::InvalidKey(
            "transmission_risk_level must be 0..=8",
        ));
    }
    if !(1..=144).contains(&key.rolling_period) {
        return Err(GaenError::InvalidKey("rolling_period must be 1..=144"));
    }
    if i32::try_from(key.rolling_start_interval_number).is_err() {
        return Err(GaenError::InvalidKey(
            "rolling_start_interval_number must fit an int32",
        ));
    }
    if key
        .days_since_onset_of_symptoms
        .is_some_and(|days| !(-14..=14).contains(&days))
    {
        return Err(GaenError::InvalidKey(
            "days_since_onset_of_symptoms must be -14..=14",
        ));
    }
    Ok(())
}

fn to_proto(key: &GaenExportKey) -> TemporaryExposureKey {
    TemporaryExposureKey {
        key_data: Some(key.key_data.to_vec()),
        transmission_risk_level: Some(key.transmission_risk_level),
        // check_key bounds both to int32 before anything is converted.
        rolling_start_interval_number: Some(key.rolling_start_interval_number as i32),
        rolling_period: Some(key.rolling_period as i32),
        report_type: Some(key.report_type as i32),
        days_since_onset_of_symptoms: key.days_since_onset_of_symptoms,
    }
}
