//! GAEN export zips (DESIGN §11): any bytes either fail to read with an error or give an
//! export whose fields and signature check are usable without a panic.
#![no_main]

use exposure_matcher::gaen::GaenExport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(export) = GaenExport::parse(data) else {
        return;
    };
    let _ = export.export().keys.len();
    let _ = export.signatures().signatures.len();
    let _ = export.verify(&data[..data.len().min(91)]);
});
