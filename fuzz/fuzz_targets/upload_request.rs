//! Upload decoding and validation: any bytes a client sends as an `UploadDiagnosisKeysRequest`
//! either fail to decode or are validated into keys or field-named violations, never a panic.
#![no_main]

use exposure_proto::v1::UploadDiagnosisKeysRequest;
use exposure_server::ingest::validate::{Limits, validate_upload};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = UploadDiagnosisKeysRequest::decode(data) else {
        return;
    };
    let limits = Limits {
        now: 1_768_046_400,
        max_key_age_days: 14,
        max_keys_per_upload: 30,
        bluezone_sub_keys_per_day: &[96],
    };
    if let Err(violations) = validate_upload(&request, limits) {
        assert!(!violations.is_empty(), "a refusal names at least one field");
    }
});
