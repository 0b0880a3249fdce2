//! Values stored in RocksDB, as protobuf messages so that later versions can add fields and
//! still read what earlier versions wrote.

use exposure_proto::v1::{BatchInfo, DiagnosisKey, UploadDiagnosisKeysResponse};

/// One accepted diagnosis key and when it may be published.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredKey {
    /// Region the key was uploaded for.
    #[prost(string, tag = "1")]
    pub region: String,
    /// The key as validated (defaults filled in).
    #[prost(message, optional, tag = "2")]
    pub key: Option<DiagnosisKey>,
    /// Unix seconds of the upload.
    #[prost(uint64, tag = "3")]
    pub received_at: u64,
    /// Unix seconds from which the key may be published (embargo end).
    #[prost(uint64, tag = "4")]
    pub release_at: u64,
    /// End of the key's last published slot; retention counts from it.
    #[prost(uint64, tag = "5")]
    pub last_slot_end: u64,
    /// Report type of the upload, as the API enum's number.
    #[prost(int32, tag = "6")]
    pub report_type: i32,
    /// The dedup key of this key, so revocation and retention can remove it.
    #[prost(bytes = "vec", tag = "7")]
    pub dedup_key: Vec<u8>,
    /// Id of the authority the key came through, so a leaked token's keys can be withdrawn
    /// and an authority revokes only its own keys. Empty for keys stored before it was kept.
    #[prost(string, tag = "8")]
    pub authority_id: String,
    /// True for a synthetic key (DESIGN §14): padding the publisher made, with random key data,
    /// stored under a sequence of [`super::keys::SYNTHETIC_SEQUENCES`]. It is published like a
    /// real key and expires with retention, but is never counted as an upload or a key, and
    /// never revoked (no dedup entry names it, no authority owns it).
    #[prost(bool, tag = "9")]
    pub synthetic: bool,
}

/// The answer given to an upload, kept for idempotent replays.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredUpload {
    /// SHA-256 of the canonical request content (region, report type, keys; not padding).
    #[prost(bytes = "vec", tag = "1")]
    pub request_digest: Vec<u8>,
    /// The answer of the first upload.
    #[prost(message, optional, tag = "2")]
    pub response: Option<UploadDiagnosisKeysResponse>,
    /// Unix seconds of the first upload; retention counts from it.
    #[prost(uint64, tag = "3")]
    pub created_at: u64,
}

/// A published batch's listing entry and the keys it was built from.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredBatch {
    /// What ListBatches returns.
    #[prost(message, optional, tag = "1")]
    pub info: Option<BatchInfo>,
    /// Ingest sequences of the keys in the batch; the daily roll-up rebuilds from them.
    #[prost(uint64, repeated, tag = "2")]
    pub key_sequences: Vec<u64>,
    /// Region the batch belongs to.
    #[prost(string, tag = "3")]
    pub region: String,
}

/// A health authority allowed to upload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Authority {
    /// Short random id, shown by `authority list` and used to revoke.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Human-readable name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Regions the authority may upload for.
    #[prost(string, repeated, tag = "3")]
    pub regions: Vec<String>,
    /// Unix seconds of creation.
    #[prost(uint64, tag = "4")]
    pub created_at: u64,
    /// Unix seconds of revocation; 0 while the token is valid.
    #[prost(uint64, tag = "5")]
    pub revoked_at: u64,
    /// An admin authority's REVOKED uploads may withdraw keys that came through another
    /// authority of the same region (a health ministry correcting a province's upload).
    #[prost(bool, tag = "6")]
    pub admin: bool,
    /// Upload calls per minute this authority may make; 0 takes the server's default.
    #[prost(uint32, tag = "7")]
    pub uploads_per_minute: u32,
    /// New keys per UTC day this authority may store; 0 takes the server's default.
    #[prost(uint64, tag = "8")]
    pub keys_per_day: u64,
}

/// A one-time upload code, stored under the SHA-256 of the code.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredCode {
    /// Region the code uploads for.
    #[prost(string, tag = "1")]
    pub region: String,
    /// Report type of the keys uploaded with it, as the API enum's number.
    #[prost(int32, tag = "2")]
    pub report_type: i32,
    /// Unix seconds after which the code no longer uploads; retention deletes it once this
    /// is older than the retention window.
    #[prost(uint64, tag = "3")]
    pub expires_at: u64,
    /// Id of the issuing authority: the keys uploaded with the code come through it.
    #[prost(string, tag = "4")]
    pub authority_id: String,
    /// Unix seconds of issue.
    #[prost(uint64, tag = "5")]
    pub issued_at: u64,
    /// Unix seconds of the upload that consumed the code; 0 while unused.
    #[prost(uint64, tag = "6")]
    pub consumed_at: u64,
    /// The issuer's daily key quota when the code was issued (0: the server's default).
    #[prost(uint64, tag = "7")]
    pub keys_per_day: u64,
    /// The patient's symptom-onset or test date as a UTC day number (Unix seconds / 86,400),
    /// when staff gave one (DESIGN §12): keys uploaded with the code get their
    /// days since onset from it. Absent in records written before it existed.
    #[prost(uint32, optional, tag = "8")]
    pub onset_day: Option<u32>,
    /// Whether `onset_day` is the test date (an asymptomatic case) rather than the date of
    /// symptom onset.
    #[prost(bool, tag = "9")]
    pub onset_is_test_date: bool,
    /// E-mail address of the console account that issued it; empty for codes issued with the
    /// authority's bearer token (and in records written before it existed).
    #[prost(string, tag = "10")]
    pub issued_by: String,
}

/// The public half of a signing key, listed by GetSigningKeys.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SigningKeyRecord {
    /// Id written into batch files.
    #[prost(string, tag = "1")]
    pub key_id: String,
    /// DER SubjectPublicKeyInfo.
    #[prost(bytes = "vec", tag = "2")]
    pub public_key_der: Vec<u8>,
    /// Unix seconds of creation.
    #[prost(uint64, tag = "3")]
    pub created_at: u64,
    /// `verification_key_version` of the GAEN exports it signs, as registered with Apple and
    /// Google (empty for a key listed before versions were recorded).
    #[prost(string, tag = "4")]
    pub gaen_key_version: String,
    /// Unix seconds of its retirement (a compromise); 0 while listed. A retired key is listed
    /// nowhere and never signs again.
    #[prost(uint64, tag = "5")]
    pub retired_at: u64,
}

/// Every signing key ever used (retired ones included), and which one signs now.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SigningKeyList {
    /// Oldest first.
    #[prost(message, repeated, tag = "1")]
    pub keys: Vec<SigningKeyRecord>,
    /// Id of the key that signs new batches.
    #[prost(string, tag = "2")]
    pub current: String,
    /// Id of the key a rotation with an overlap added (`signing-key rotate --overlap`, DESIGN
    /// §15): it signs GAEN exports beside the current key until `next_current_from`, when it
    /// becomes current; empty outside an overlap.
    #[prost(string, tag = "3")]
    pub next: String,
    /// With `next`: Unix seconds from which it is current (the publisher's next run after it
    /// makes the switch).
    #[prost(uint64, tag = "4")]
    pub next_current_from: u64,
}

impl StoredKey {
    /// Returns the key in the matcher's types, for expansion into tags.
    pub fn matcher_key(&self) -> Result<exposure_matcher::DiagnosisKey, super::StorageError> {
        use exposure_matcher as matcher;
        use exposure_proto::v1::diagnosis_key::Key;
        let corrupt = |reason: &str| super::StorageError::Corrupt {
            column_family: super::CF_KEYS,
            reason: reason.to_owned(),
        };
        match self.key.as_ref().and_then(|key| key.key.as_ref()) {
            Some(Key::Gaen(gaen)) => Ok(matcher::DiagnosisKey::Gaen(matcher::GaenKey {
                key_data: gaen
                    .key_data
                    .as_slice()
                    .try_into()
                    .map_err(|_| corrupt("gaen key_data length"))?,
                rolling_start_interval_number: gaen.rolling_start_interval_number,
                rolling_period: gaen.rolling_period,
            })),
            Some(Key::Bluezone(bluezone)) => {
                Ok(matcher::DiagnosisKey::Bluezone(matcher::BluezoneKey {
                    daily_key: bluezone
                        .daily_key
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("bluezone daily_key length"))?,
                    day_number: bluezone.day_number,
                    sub_keys_per_day: bluezone.sub_keys_per_day,
                    contagious_from: bluezone.contagious_from,
                    contagious_until: bluezone.contagious_until,
                }))
            }
            Some(Key::StaticId(static_id)) => {
                Ok(matcher::DiagnosisKey::Static(matcher::StaticKey {
                    identifier: static_id.identifier.clone(),
                    contagious_from: static_id.contagious_from,
                    contagious_until: static_id.contagious_until,
                }))
            }
            None => Err(corrupt("stored key without key material")),
        }
    }
}

/// One GAEN export zip of a region (DESIGN §11), as its index names it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GaenFileRecord {
    /// File name, `{start}-{end}-00001.zip`.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The file's `start_timestamp`.
    #[prost(uint64, tag = "2")]
    pub start_timestamp: u64,
    /// The file's `end_timestamp`; retention counts from it.
    #[prost(uint64, tag = "3")]
    pub end_timestamp: u64,
    /// Keys in the file, padding included.
    #[prost(uint64, tag = "4")]
    pub key_count: u64,
    /// Size of the zip.
    #[prost(uint64, tag = "5")]
    pub size_bytes: u64,
}

/// The retained GAEN export files of a region, oldest first: what `gaen/index.txt` lists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GaenIndexRecord {
    /// Oldest first.
    #[prost(message, repeated, tag = "1")]
    pub files: Vec<GaenFileRecord>,
}

#[cfg(test)]
mod tests {
    use super::StoredCode;

    #[test]
    fn a_code_record_written_before_onset_dates_and_issuers_still_reads() {
        // Protobuf bytes of a code as the first releases wrote it (fields 1..=5): region
        // "VN-TB", report type 1, expiry 100, authority "a", issued at 50.
        let old = [
            0x0a, 0x05, b'V', b'N', b'-', b'T', b'B', 0x10, 0x01, 0x18, 0x64, 0x22, 0x01, b'a',
            0x28, 0x32,
        ];
        let code: StoredCode = prost::Message::decode(&old[..]).expect("old record");
        assert_eq!(code.region, "VN-TB");
        assert_eq!((code.expires_at, code.issued_at), (100, 50));
        assert_eq!(
            code.onset_day, None,
            "no date: the export leaves the value absent"
        );
        assert!(!code.onset_is_test_date);
        assert_eq!(code.issued_by, "");
        // A record with a date of day 0 keeps it (present, not mistaken for absent).
        let dated = StoredCode {
            onset_day: Some(0),
            ..code
        };
        let again: StoredCode =
            prost::Message::decode(&prost::Message::encode_to_vec(&dated)[..]).expect("new");
        assert_eq!(again.onset_day, Some(0));
    }
}
