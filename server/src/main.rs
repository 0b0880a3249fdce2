//! `exposure-server`: starts the server (the default), or manages authorities and signing keys.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use exposure_server::admin::backup::{BackupCommand, RestoreCommand};
use exposure_server::admin::{
    self, AdminError, AuthorityCommand, PublishSyncCommand, SigningKeyCommand, UserCommand,
};
use exposure_server::{ServerConfig, telemetry};

/// Exposure-notification key server: health authorities upload diagnosis keys; phones download
/// signed filter batches and find out, on the phone, whether they met a case.
#[derive(Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServerConfig,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at startup")]
enum Command {
    /// Runs the server (what `exposure-server` with no command does).
    Serve(Box<ServerConfig>),
    /// Manages the health authorities that may upload, and their tokens.
    #[command(subcommand)]
    Authority(AuthorityCommand),
    /// Manages the staff accounts of the console (DESIGN.md section 13).
    #[command(subcommand)]
    User(UserCommand),
    /// Manages the keys that sign published batches.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCommand),
    /// Rewrites the whole static layout into object storage (an empty or emptied bucket), in
    /// DESIGN.md section 10's order; the server must be stopped.
    #[command(name = "publish-sync")]
    PublishSync(PublishSyncCommand),
    /// Backs up a data directory into a new folder of `--to`, also while the server runs
    /// (waiting admin requests included, a SHA-256 manifest of every file; sealed, and with the
    /// private signing keys, when `--backup-key-file` is given); `backup --verify DIR` checks a
    /// backup.
    Backup(BackupCommand),
    /// Restores a backup into a new (missing or empty) data directory and checks that it opens.
    Restore(RestoreCommand),
}

/// Exit code for bad usage (sysexits.h EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Everything the server and the admin commands create (RocksDB files included, which take
    // the process mask) is private to the server's user, whatever mask it was started with.
    exposure_server::sys::restrict_umask();
    // Before the flags are parsed: the default connection caps derive from the raised limit.
    exposure_server::sys::raise_open_file_limit();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let usage_error = error.use_stderr();
            let _ = error.print();
            return if usage_error {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let mut stdout = std::io::stdout();
    let admin_result = match cli.command {
        None => return serve(cli.serve),
        Some(Command::Serve(config)) => return serve(*config),
        Some(Command::Authority(command)) => admin::authority(command, &mut stdout),
        Some(Command::User(command)) => admin::user(command, &mut stdout),
        Some(Command::SigningKey(command)) => admin::signing_key(command, &mut stdout),
        Some(Command::PublishSync(command)) => admin::publish_sync(command, &mut stdout),
        Some(Command::Backup(command)) => admin::backup::backup(command, &mut stdout),
        Some(Command::Restore(command)) => admin::backup::restore(command, &mut stdout),
    };
    match admin_result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(if matches!(error, AdminError::Usage(_)) {
                EXIT_USAGE
            } else {
                1
            })
        }
    }
}

fn serve(config: ServerConfig) -> ExitCode {
    telemetry::init_tracing(config.log_format);
    if let Err(error) = config.validate() {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // Signals are caught from here on, before the store opens (see `signal::shutdown`).
    let shutdown = {
        let _runtime = runtime.enter();
        exposure_server::signal::shutdown()
    };
    let result = runtime.block_on(exposure_server::launch::serve(config, shutdown));
    // A publisher batch still building after shutdown has committed nothing; it is not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.is_usage() {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_USAGE)
            } else {
                tracing::error!(%error, "server failed");
                ExitCode::FAILURE
            }
        }
    }
}
