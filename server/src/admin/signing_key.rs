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
    /// batches they signed.
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
    },
    /// Retires a key after a compromise: GetSigningKeys, `v1/signing-keys` and the bucket stop
    /// listing it, so batches it signed no longer verify, and its private key file is deleted.
    /// The current key cannot be retired: rotate first.
    Retire {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// The key's id, as `signing-key list` shows it.
        #[arg(value_name = "KEY_ID")]
        key_id: String,
    },
    /// Lists every signing key: id, creation time, GAEN version and status (current,
    /// verifying: listed but no longer signing, or retired).
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
        } => rotate(&data, gaen_key_version.as_deref(), key_file, out),
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
    out: &mut impl Write,
) -> Result<(), AdminError> {
    let now = Clock::System.now();
    let (opened, list) = open_with_list(data)?;
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
                requested_at: now,
                ..InboxRequest::default()
            };
            let path = inbox::submit(&data.data_dir, &request).map_err(failed)?;
            if report_applied(out, &path)? {
                if list_of_running(data)?.current != id {
                    if key_file.is_none() {
                        let _ = std::fs::remove_file(signing::key_file(&data.data_dir, &id));
                    }
                    return Err(AdminError::Failed(format!(
                        "the running server did not make key {id} current (see its log)"
                    )));
                }
                writeln!(
                    out,
                    "signing key {id} (GAEN version {version}) signs every batch and GAEN export from now on"
                )
                .map_err(failed)?;
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

fn retire(data: &DataDir, key_id: &str, out: &mut impl Write) -> Result<(), AdminError> {
    let now = Clock::System.now();
    let (opened, list) = open_with_list(data)?;
    lifecycle::check_retirable(&list, key_id)?;
    match opened {
        Opened::Store(store) => {
            lifecycle::retire(&store, &data.data_dir, key_id, now, &[])?;
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
