//! `exposure-server signing-key rotate|retire|list` (see [`crate::signing::lifecycle`]). On a
//! running server, rotation and retirement go through its inbox, as authority changes do, and
//! take effect within a second; the command then reads the store to confirm what the server did.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;

use super::{AdminError, DataDir, Opened, failed, open, report_applied};
use crate::clock::Clock;
use crate::inbox::{self, InboxRequest};
use crate::signing::{self, SigningError, lifecycle};
use crate::storage::Store;
use crate::storage::records::SigningKeyList;

/// `exposure-server signing-key …`
#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Makes a new signing key current: at once on a running server (through its inbox), else
    /// from the next start. Earlier keys stay listed by GetSigningKeys, so phones verify the
    /// batches they signed. With `--overlap` the new key is the next key first: listed at once
    /// (GetSigningKeys, `v1/signing-keys`, with the time it becomes current), signing every
    /// GAEN export beside the current key, so it can be registered with Apple and Google
    /// before it is the only signer; the publisher's first run after the overlap makes it
    /// current. One overlap at a time.
    Rotate {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// GAEN `verification_key_version` the new key is registered under with Apple and
        /// Google; GAEN exports signed with it carry it. Default: the next free `vN` after the
        /// current key's.
        #[arg(long)]
        gaen_key_version: Option<String>,
        /// PKCS#8 PEM file of the new P-256 key, kept outside the data directory (e.g. made
        /// with `exposure-matcher keygen` and registered before the rotation); the server then
        /// needs `--signing-key-file FILE` from its next start on. Default: a key generated
        /// into the data directory.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// How long the new key signs GAEN exports beside the current one before it becomes
        /// current (e.g. `7d`; counted from when the server applies the rotation, by its
        /// clock). Long enough to register the new key with Apple and Google. 0 or absent:
        /// current at once. Not with `--key-file`.
        #[arg(long, value_name = "DURATION", value_parser = crate::config::parse_duration)]
        overlap: Option<std::time::Duration>,
    },
    /// Retires a key after a compromise: GetSigningKeys, `v1/signing-keys` and the bucket stop
    /// listing it, so batches it signed no longer verify, and its private key file is deleted.
    /// The current key cannot be retired: rotate first. Retiring the next key of an overlap
    /// calls that rotation off.
    Retire {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// The key's id, as `signing-key list` shows it.
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Lists every signing key: id, creation time, GAEN version and status (current, next:
    /// signing GAEN exports beside the current key until the time shown, verifying: listed but
    /// no longer signing, or retired).
    List {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
    },
}

impl From<SigningError> for AdminError {
    fn from(error: SigningError) -> Self {
        match error {
            SigningError::Refused(message) => AdminError::Usage(message),
            SigningError::Invalid { .. } => AdminError::Usage(error.to_string()),
            other => AdminError::Failed(other.to_string()),
        }
    }
}

/// Runs a `signing-key` command, writing its report to `out`.
pub fn signing_key(command: SigningKeyCommand, out: &mut impl Write) -> Result<(), AdminError> {
    match command {
        SigningKeyCommand::Rotate {
            data,
            gaen_key_version,
            key_file,
            overlap,
        } => {
            let overlap_seconds = overlap.map_or(0, |overlap| overlap.as_secs());
            rotate(
                &data,
                gaen_key_version.as_deref(),
                key_file,
                overlap_seconds,
                out,
            )
        }
        SigningKeyCommand::Retire { data, key_id } => retire(&data, &key_id, out),
        SigningKeyCommand::List { data } => {
            let (_, list) = open_with_list(&data)?;
            writeln!(out, "key_id\tcreated_at\tgaen_key_version\tstatus").map_err(failed)?;
            for record in &list.keys {
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}",
                    record.key_id,
                    record.created_at,
                    record.gaen_key_version,
                    lifecycle::status(&list, record)
                )
                .map_err(failed)?;
            }
            Ok(())
        }
    }
}

/// Opens the store (or learns that a server holds it) and reads the signing-key list.
fn open_with_list(data: &DataDir) -> Result<(Opened, SigningKeyList), AdminError> {
    let opened = open(&data.data_dir)?;
    let list = match &opened {
        Opened::Store(store) => store.signing_keys(),
        Opened::HeldByServer => {
            Store::open_read_only(&data.data_dir).and_then(|store| store.signing_keys())
        }
    }
    .map_err(failed)?;
    Ok((opened, list))
}

/// Reads the signing-key list of the store a running server holds.
fn list_of_running(data: &DataDir) -> Result<SigningKeyList, AdminError> {
    Store::open_read_only(&data.data_dir)
        .and_then(|store| store.signing_keys())
        .map_err(failed)
}

fn rotate(
    data: &DataDir,
    requested_version: Option<&str>,
    key_file: Option<PathBuf>,
    overlap_seconds: u64,
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let now = Clock::System.now();
    let (opened, list) = open_with_list(data)?;
    lifecycle::check_no_overlap(&list)?;
    if overlap_seconds != 0 && key_file.is_some() {
        return Err(AdminError::Usage(
            "--overlap with --key-file: a next key must live in the data directory (the server reads it at every start during the overlap); leave --key-file out, or rotate without --overlap".into(),
        ));
    }
    let version = lifecycle::next_gaen_version(&list, requested_version)?;
    lifecycle::check_gaen_version(&list, &version)?;
    let key_file = key_file
        .map(|path| {
            std::fs::canonicalize(&path).map_err(|error| {
                AdminError::Usage(format!("--key-file {}: {error}", path.display()))
            })
        })
        .transpose()?;
    let signer = match &key_file {
        Some(path) => signing::read_given_key(path)?,
        None => signing::generate_key(&data.data_dir)?,
    };
    let id = signer.key_id().to_owned();
    lifecycle::check_new_key(&list, &id)?;
    match opened {
        Opened::Store(store) if overlap_seconds != 0 => {
            let current_from = now.saturating_add(overlap_seconds);
            lifecycle::add_next(&store, None, &signer, &version, now, current_from, &[])?;
            report_next(out, &id, &version, current_from)?;
        }
        Opened::Store(store) => {
            lifecycle::activate(&store, None, &signer, &version, now, &[])?;
            writeln!(
                out,
                "signing key {id} (GAEN version {version}) is current; the server signs with it from its next start"
            )
            .map_err(failed)?;
        }
        Opened::HeldByServer => {
            let request = InboxRequest {
                rotate_key_id: id.clone(),
                rotate_key_file: key_file
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
                gaen_key_version: version.clone(),
                overlap_seconds,
                requested_at: now,
                ..InboxRequest::default()
            };
            let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
            if report_applied(out, &path)? {
                let applied = list_of_running(data)?;
                let done = if overlap_seconds == 0 {
                    applied.current == id
                } else {
                    applied.next == id
                };
                if !done {
                    if key_file.is_none() {
                        let _ = std::fs::remove_file(signing::key_file(&data.data_dir, &id));
                    }
                    return Err(AdminError::Failed(format!(
                        "the running server did not take key {id} into service (see its log)"
                    )));
                }
                if overlap_seconds == 0 {
                    writeln!(
                        out,
                        "signing key {id} (GAEN version {version}) signs every batch and GAEN export from now on"
                    )
                    .map_err(failed)?;
                } else {
                    report_next(out, &id, &version, applied.next_current_from)?;
                }
            }
        }
    }
    writeln!(
        out,
        "earlier keys stay listed for verification; register the new public key (GetSigningKeys or v1/signing-keys) with Apple and Google under version {version}"
    )
    .map_err(failed)?;
    if let Some(path) = key_file {
        writeln!(
            out,
            "its private key stays in {0}: start the server with --signing-key-file {0} from now on",
            path.display()
        )
        .map_err(failed)?;
    }
    Ok(())
}

/// Reports a next key taken into service by a rotation with an overlap.
fn report_next(
    out: &mut impl Write,
    id: &str,
    version: &str,
    current_from: u64,
) -> Result<(), AdminError> {
    writeln!(
        out,
        "signing key {id} (GAEN version {version}) is the next key: it signs every GAEN export beside the current key and becomes current at {}",
        lifecycle::time_text(current_from)
    )
    .map_err(failed)
}

fn retire(data: &DataDir, key_id: &str, out: &mut impl Write) -> Result<(), AdminError> {
    let now = Clock::System.now();
    let (opened, list) = open_with_list(data)?;
    lifecycle::check_retirable(&list, key_id)?;
    match opened {
        Opened::Store(store) => {
            lifecycle::retire(&store, None, &data.data_dir, key_id, now, &[])?;
            writeln!(
                out,
                "retired key {key_id}: GetSigningKeys and v1/signing-keys no longer list it (a bucket gets the new list at the server's next start)"
            )
            .map_err(failed)?;
        }
        Opened::HeldByServer => {
            let request = InboxRequest {
                retire_key_id: key_id.to_owned(),
                requested_at: now,
                ..InboxRequest::default()
            };
            let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
            if report_applied(out, &path)? {
                let retired = list_of_running(data)?
                    .keys
                    .iter()
                    .any(|record| record.key_id == key_id && record.retired_at != 0);
                if !retired {
                    return Err(AdminError::Failed(format!(
                        "the running server did not retire key {key_id} (see its log)"
                    )));
                }
                writeln!(
                    out,
                    "retired key {key_id}: GetSigningKeys, v1/signing-keys and the bucket no longer list it"
                )
                .map_err(failed)?;
            }
        }
    }
    writeln!(
        out,
        "batches it signed no longer verify; phones fetch the key list again within its cache time (5 minutes)"
    )
    .map_err(failed)
}
