//! The admin inbox's request files: any bytes either fail to decode or give a request, never a
//! panic (the server quarantines what does not decode).
#![no_main]

use exposure_server::inbox::InboxRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = InboxRequest::decode(data) {
        let _ = request.encode_to_vec();
    }
});
