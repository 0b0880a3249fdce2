//! The HTTP listener's router (DESIGN §10): any path gives a route, "unknown" or a one-line
//! reason, never a panic.
#![no_main]

use exposure_server::layout::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(route) = parse(path) {
        let _ = route.name();
    }
});
