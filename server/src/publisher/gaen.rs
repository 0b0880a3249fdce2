//! GAEN export files (DESIGN §11): the GAEN-scheme keys of each hourly batch, its synthetic keys
//! (DESIGN §14) included, also go out as a Google/Apple export zip, and keys withdrawn after
//! their export go into the next zip's `revised_keys`. A file's `start` and `end` are the bounds
//! of the publish window it closes, aligned to `publish_interval`, never a key's arrival second.
//!
//! A zip rides the commit of its hourly batch: the zip, the region's rewritten index and the
//! deletion of the revisions it carries join the batch's synced write, so keys are exported
//! exactly when they are published (never twice, never lost) and the index never names a file
//! that is not stored. Revisions of a region without a batch this run get a file of their own.

use exposure_matcher::gaen::{
    GaenExportKey, GaenExportParams, GaenReportType, GaenSigner, MAX_RECORDS_PER_FILE,
    build_gaen_exports,
};
use exposure_proto::v1::{self as api, diagnosis_key::Key};
use rocksdb::WriteBatch;

use super::{PublishError, PublishReport, Publisher};
use crate::metrics;
use crate::signing::InService;
use crate::storage::outbox::OutboxTask;
use crate::storage::records::{GaenFileRecord, GaenIndexRecord, StoredKey};

/// How GAEN export files are made; `None` in the publisher's settings turns them off.
#[derive(Clone, Debug)]
pub struct GaenSettings {
    /// `verification_key_id` the public keys are registered under (default `452`); the
    /// `verification_key_version` is the signing key's own (`crate::signing::ActiveKey`).
    pub key_id: String,
    /// Length of a publish window in seconds (`publish_interval`, at least 1): file windows
    /// are aligned to it.
    pub window_seconds: u64,
}

/// Export files built for one commit, with the index and revision deletions that go with them.
pub(super) struct PreparedGaen {
    /// (file name, zip bytes) of the new files.
    files: Vec<(String, Vec<u8>)>,
    /// The region's index with the new files appended.
    index: GaenIndexRecord,
    /// Meta keys of the revisions the new files carry.
    consumed_revisions: Vec<Vec<u8>>,
}

impl PreparedGaen {
    /// Returns how many files the export writes.
    pub(super) fn file_count(&self) -> usize {
        self.files.len()
    }
}

impl Publisher {
    /// Builds the export of the GAEN keys among `keys` (real and synthetic) and of the region's
    /// pending revisions; `None` when there are neither or exports are off.
    pub(super) fn prepare_gaen(
        &self,
        region: &str,
        keys: &[&StoredKey],
        now: u64,
        signing: &InService,
    ) -> Result<Option<PreparedGaen>, PublishError> {
        let Some(settings) = &self.settings.gaen else {
            return Ok(None);
        };
        let export_keys: Vec<GaenExportKey> =
            keys.iter().filter_map(|key| export_key(key)).collect();
        let revisions: Vec<(Vec<u8>, StoredKey)> = self
            .store
            .gaen_revisions()?
            .into_iter()
            .filter(|(_, key)| key.region == region)
            .collect();
        let revised_keys: Vec<GaenExportKey> = revisions
            .iter()
            .filter_map(|(_, key)| export_key(key))
            .collect();
        if export_keys.is_empty() && revised_keys.is_empty() {
            return Ok(None);
        }
        let mut index = self.store.gaen_index(region)?;
        let last_end = index.files.last().map(|file| file.end_timestamp);
        let (start_timestamp, end_timestamp) =
            publish_window(now, last_end, settings.window_seconds);
        let params = GaenExportParams {
            region: region.to_owned(),
            start_timestamp,
            end_timestamp,
            verification_key_id: settings.key_id.clone(),
            // The synthetic keys are the padding, in the filter batch and confirm store too.
            min_records: 0,
            max_records_per_file: MAX_RECORDS_PER_FILE,
        };
        // One signature per signing key in service: the current key's, then during a
        // rotation's overlap (DESIGN §15) the next key's, so phones accept the file with
        // whichever key they have registered.
        let signers: Vec<GaenSigner<'_>> = std::iter::once(&signing.current)
            .chain(signing.next.as_ref().map(|next| &next.key))
            .map(|key| GaenSigner {
                signer: &key.signer,
                verification_key_version: &key.gaen_key_version,
            })
            .collect();
        let built = build_gaen_exports(
            &params,
            &export_keys,
            &revised_keys,
            &signers,
            &mut rand::rngs::OsRng,
        )
        .map_err(|error| PublishError::Build(format!("gaen export: {error}")))?;
        let mut files = Vec::with_capacity(built.len());
        for file in built {
            let name = file.file_name();
            index.files.push(GaenFileRecord {
                name: name.clone(),
                start_timestamp: file.start_timestamp,
                end_timestamp: file.end_timestamp,
                key_count: file.key_count as u64,
                size_bytes: file.zip.len() as u64,
            });
            files.push((name, file.zip));
        }
        Ok(Some(PreparedGaen {
            files,
            index,
            consumed_revisions: revisions
                .into_iter()
                .map(|(meta_key, _)| meta_key)
                .collect(),
        }))
    }

    /// Adds a prepared export's writes to the commit: its files, the index, the revisions' end,
    /// and (when publishing to a bucket) the task that copies them there.
    pub(super) fn stage_gaen(
        &self,
        write: &mut WriteBatch,
        region: &str,
        prepared: &PreparedGaen,
        now: u64,
        commits: &std::sync::MutexGuard<'_, ()>,
    ) {
        self.store
            .put_gaen_files(write, region, &prepared.files, &prepared.index);
        for meta_key in &prepared.consumed_revisions {
            self.store.delete_gaen_revision(write, meta_key);
        }
        self.stage_outbox(
            write,
            &[OutboxTask::SyncGaen(region.to_owned())],
            now,
            commits,
        );
        for (name, zip) in &prepared.files {
            tracing::info!(%region, file = %name, bytes = zip.len(), "gaen export staged");
        }
    }

    /// Writes a file for each region whose revisions no batch of this run carried.
    pub(super) fn publish_gaen_revisions(
        &self,
        now: u64,
        report: &mut PublishReport,
    ) -> Result<(), PublishError> {
        if self.settings.gaen.is_none() {
            return Ok(());
        }
        let mut regions: Vec<String> = self
            .store
            .gaen_revisions()?
            .into_iter()
            .map(|(_, key)| key.region)
            .collect();
        regions.dedup();
        for region in regions {
            if self.stopping() {
                return Ok(());
            }
            let signing = self.keys.in_service();
            let Some(prepared) = self.prepare_gaen(&region, &[], now, &signing)? else {
                continue;
            };
            {
                let commits = self.store.lock_commits();
                if !self.still_in_service(&signing) {
                    // Rotated meanwhile: the next run signs these revisions with the new keys.
                    continue;
                }
                let mut write = WriteBatch::default();
                self.stage_gaen(&mut write, &region, &prepared, now, &commits);
                self.store.write_synced(write)?;
            }
            self.wake_outbox();
            ::metrics::counter!(metrics::GAEN_FILES_PUBLISHED_TOTAL)
                .increment(prepared.file_count() as u64);
            report.gaen_files += prepared.files.len();
        }
        Ok(())
    }

    /// Adds the deletion of GAEN files and revisions older than `cutoff` to `write`; returns
    /// how many files go and the regions they belong to.
    pub(super) fn expire_gaen(
        &self,
        write: &mut WriteBatch,
        cutoff: u64,
    ) -> Result<(usize, Vec<String>), PublishError> {
        let mut expired = 0;
        let mut regions = Vec::new();
        for region in self.store.gaen_regions()? {
            let mut index = self.store.gaen_index(&region)?;
            let before = index.files.len();
            index.files.retain(|file| {
                let keep = file.end_timestamp >= cutoff;
                if !keep {
                    self.store.delete_gaen_file(write, &region, &file.name);
                }
                keep
            });
            if index.files.len() != before {
                expired += before - index.files.len();
                self.store.put_gaen_index(write, &region, &index);
                regions.push(region);
            }
        }
        for (meta_key, key) in self.store.gaen_revisions()? {
            if key.last_slot_end < cutoff {
                self.store.delete_gaen_revision(write, &meta_key);
            }
        }
        Ok((expired, regions))
    }
}

/// Returns the `(start, end)` of the export window a run at `now` closes: the end of the
/// publish window holding `now` (a multiple of `window_seconds`), or the next window when a
/// file of the region already ends there (every file name stays new); the start is where the
/// region's last window ended (aligned), else one window before the end.
fn publish_window(now: u64, last_end: Option<u64>, window_seconds: u64) -> (u64, u64) {
    let window = window_seconds.max(1);
    let mut end = now.div_ceil(window) * window;
    if let Some(last) = last_end
        && end <= last
    {
        end = (last / window + 1) * window;
    }
    let start = match last_end {
        // A split's later files end at `end + i`; the window itself ended at the multiple.
        Some(last) => last / window * window,
        None => end - window,
    };
    (start, end)
}

/// Returns a stored key as an exported one, or `None` for a key of another scheme.
pub fn export_key(key: &StoredKey) -> Option<GaenExportKey> {
    let diagnosis_key = key.key.as_ref()?;
    let Some(Key::Gaen(gaen)) = diagnosis_key.key.as_ref() else {
        return None;
    };
    let report_type = match api::ReportType::try_from(key.report_type) {
        Ok(api::ReportType::ConfirmedClinicalDiagnosis) => {
            GaenReportType::ConfirmedClinicalDiagnosis
        }
        Ok(api::ReportType::SelfReport) => GaenReportType::SelfReport,
        Ok(api::ReportType::Revoked) => GaenReportType::Revoked,
        _ => GaenReportType::ConfirmedTest,
    };
    Some(GaenExportKey {
        key_data: gaen.key_data.as_slice().try_into().ok()?,
        transmission_risk_level: i32::try_from(diagnosis_key.transmission_risk_level).ok()?,
        rolling_start_interval_number: gaen.rolling_start_interval_number,
        rolling_period: gaen.rolling_period,
        report_type,
        // The upload's value, else the one a code upload filled in from the code's
        // symptom-onset or test date (ingest stores it with the key, DESIGN §12), else absent.
        days_since_onset_of_symptoms: gaen.days_since_onset_of_symptoms,
    })
}

#[cfg(test)]
mod tests {
    use super::publish_window;

    #[test]
    fn windows_are_aligned_to_the_publish_interval_and_never_repeat_an_end() {
        // Hourly publishing: a run at 10:17 closes the window ending 11:00.
        let hour = 3_600;
        let t = 1_767_225_600; // 2026-01-01 00:00 UTC
        assert_eq!(
            publish_window(t + 10 * hour + 17 * 60, None, hour),
            (t + 10 * hour, t + 11 * hour)
        );
        // The next run starts where that window ended.
        assert_eq!(
            publish_window(t + 11 * hour + 5, Some(t + 11 * hour), hour),
            (t + 11 * hour, t + 12 * hour)
        );
        // A second run in the same window takes the next one, so the file name is new.
        assert_eq!(
            publish_window(t + 10 * hour + 40 * 60, Some(t + 11 * hour), hour),
            (t + 11 * hour, t + 12 * hour)
        );
        // After a split (files ending at end, end + 1), the next window starts at the multiple.
        assert_eq!(
            publish_window(t + 13 * hour, Some(t + 11 * hour + 1), hour),
            (t + 11 * hour, t + 13 * hour)
        );
        // A run exactly on a boundary closes the window ending there.
        assert_eq!(
            publish_window(t + 12 * hour, Some(t + 11 * hour), hour),
            (t + 11 * hour, t + 12 * hour)
        );
    }
}
