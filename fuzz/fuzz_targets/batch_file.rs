//! Batch file v1 (DESIGN §4): any bytes either fail to parse with an error or parse into a
//! file whose lookups, id and signature check run without a panic.
#![no_main]

use exposure_matcher::BatchFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = BatchFile::parse(data) else {
        return;
    };
    let _ = file.batch_id();
    let _ = file.header().descriptor();
    let _ = file.header().bits_per_element();
    for chunk in data.chunks_exact(8).take(64) {
        let key = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let _ = file.contains_key(key);
    }
    // Not a valid key: verification must refuse it, not panic.
    let _ = file.verify(&data[..data.len().min(91)]);
});
