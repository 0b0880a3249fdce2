//! The demo's last step (DESIGN §11): the case's key in the region's Google/Apple export file,
//! read like an Android or iOS phone would, from `gaen/index.txt` on the server's HTTP listener.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exposure_matcher::gaen::GaenExport;

use crate::http::HttpClient;
use crate::target::Target;

/// How often the demo polls the GAEN index.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Finds the export file holding `key_data` (newest first), verifies it with `public_key_der`,
/// and tells what it found; returns the file's path.
pub async fn show_export(
    http_target: &Target,
    region: &str,
    key_data: &[u8],
    public_key_der: &[u8],
    wait: Duration,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<String> {
    let http = HttpClient::new(http_target);
    let index_path = format!("/v1/regions/{region}/gaen/index.txt");
    let started = Instant::now();
    loop {
        // Before the first export the index is a 404; that is a wait, not a failure.
        let index = http.get(&index_path).await.ok();
        let lines: Vec<String> = index
            .map(|body| {
                String::from_utf8_lossy(&body)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        for path in lines.iter().rev() {
            let zip = http
                .get(&format!("/{path}"))
                .await
                .map_err(|status| anyhow::anyhow!("GET {path}: {}", status.message()))?;
            let export = GaenExport::parse(&zip).with_context(|| format!("parsing {path}"))?;
            let body = export.export();
            let Some(key) = body
                .keys
                .iter()
                .find(|key| key.key_data.as_deref() == Some(key_data))
            else {
                continue;
            };
            export
                .verify(public_key_der)
                .with_context(|| format!("verifying {path}"))?;
            let info = body.signature_infos.first();
            writeln!(
                out,
                "[GAEN] Export file: {path} ({} bytes) lists the case's key among {} keys (the rest is padding a phone cannot tell apart): interval {}, period {}, report type {}.\n       Signed for Apple/Google as verification_key_id {} version {}; the signature over export.bin is valid.",
                zip.len(),
                body.keys.len(),
                key.rolling_start_interval_number.unwrap_or_default(),
                key.rolling_period.unwrap_or_default(),
                key.report_type.unwrap_or_default(),
                info.and_then(|info| info.verification_key_id.as_deref())
                    .unwrap_or("-"),
                info.and_then(|info| info.verification_key_version.as_deref())
                    .unwrap_or("-"),
            )?;
            return Ok(path.clone());
        }
        anyhow::ensure!(
            started.elapsed() < wait,
            "no GAEN export file listing the case appeared within {} (is --gaen-export false?)",
            humantime::format_duration(wait)
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
