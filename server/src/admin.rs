//! Operator commands that work on a data directory directly: health authorities and their
//! upload tokens, and signing-key rotation. They open the database themselves, so they run
//! while the server on that directory is stopped (RocksDB allows one process at a time).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::clock::Clock;
use crate::ingest::validate::is_valid_region;
use crate::storage::{Store, StorageError};

/// `exposure-server authority …`
#[derive(Debug, Subcommand)]
pub enum AuthorityCommand {
    /// Creates a health authority and prints its upload token once, alone on the last line.
    Add {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// Human-readable name, e.g. "Thai Binh CDC".
        #[arg(long)]
        name: String,
        /// Region the authority may upload for (repeat for several), e.g. VN-TB.
        #[arg(long = "region", required = true)]
        regions: Vec<String>,
    },
    /// Lists authorities (never their tokens).
    List {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
    },
    /// Revokes an authority's token; uploads with it fail from the next server start on.
    Revoke {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
        /// The authority's id, as `authority list` shows it.
        #[arg(long)]
        id: String,
    },
}

/// `exposure-server signing-key …`
#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Generates a new signing key that signs every batch from the next start on; old public
    /// keys stay listed by GetSigningKeys so phones can verify batches they already hold.
    Rotate {
        /// Where the database lives.
        #[command(flatten)]
        data: DataDir,
    },
}

/// The data directory an admin command works on.
#[derive(Debug, Args)]
pub struct DataDir {
    /// Folder of the server's database (the server must be stopped).
    #[arg(long, env = "EXPOSURE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Errors of admin commands, each a message for the operator.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// Bad arguments (exit code 64).
    #[error("{0}")]
    Usage(String),
    /// The command could not be carried out.
    #[error("{0}")]
    Failed(String),
}

fn open(data_dir: &Path) -> Result<Store, AdminError> {
    Store::open(data_dir).map_err(|error| match &error {
        StorageError::Rocks(rocks) if rocks.to_string().contains("lock") => AdminError::Failed(format!(
            "{} is in use by a running exposure-server; stop it first ({error})",
            data_dir.display()
        )),
        _ => AdminError::Failed(error.to_string()),
    })
}

fn failed(error: impl std::fmt::Display) -> AdminError {
    AdminError::Failed(error.to_string())
}

/// Runs an `authority` command, writing its report to `out`.
pub fn authority(command: AuthorityCommand, out: &mut impl Write) -> Result<(), AdminError> {
    let now = Clock::System.now();
    match command {
        AuthorityCommand::Add { data, name, regions } => {
            if let Some(bad) = regions.iter().find(|region| !is_valid_region(region)) {
                return Err(AdminError::Usage(format!(
                    "--region {bad:?} must match ^[A-Z]{{2}}(-[A-Z0-9]{{1,3}})?$, e.g. VN-TB"
                )));
            }
            if name.trim().is_empty() {
                return Err(AdminError::Usage("--name must not be empty".into()));
            }
            let store = open(&data.data_dir)?;
            let (authority, token) = store.add_authority(&name, &regions, now).map_err(failed)?;
            writeln!(out, "created authority {} ({}) for {}", authority.id, authority.name, authority.regions.join(", "))
                .map_err(failed)?;
            writeln!(out, "upload token (shown once; send it as `authorization: Bearer <token>`):").map_err(failed)?;
            writeln!(out, "{token}").map_err(failed)?;
        }
        AuthorityCommand::List { data } => {
            let store = open(&data.data_dir)?;
            writeln!(out, "id\tname\tregions\tcreated_at\tstatus").map_err(failed)?;
            for authority in store.list_authorities().map_err(failed)? {
                let status = if authority.revoked_at == 0 { "active".to_owned() } else { format!("revoked at {}", authority.revoked_at) };
                writeln!(out, "{}\t{}\t{}\t{}\t{status}", authority.id, authority.name, authority.regions.join(","), authority.created_at)
                    .map_err(failed)?;
            }
        }
        AuthorityCommand::Revoke { data, id } => {
            let store = open(&data.data_dir)?;
            if !store.revoke_authority(&id, now).map_err(failed)? {
                return Err(AdminError::Usage(format!("no active authority with id {id:?} (see `authority list`)")));
            }
            writeln!(out, "revoked authority {id}").map_err(failed)?;
        }
    }
    Ok(())
}

/// Runs a `signing-key` command, writing its report to `out`.
pub fn signing_key(command: SigningKeyCommand, out: &mut impl Write) -> Result<(), AdminError> {
    match command {
        SigningKeyCommand::Rotate { data } => {
            let store = open(&data.data_dir)?;
            let signer = crate::signing::add_new_key(&store, &data.data_dir, Clock::System.now()).map_err(failed)?;
            writeln!(out, "new signing key {} signs from the next start on", signer.key_id()).map_err(failed)?;
        }
    }
    Ok(())
}
