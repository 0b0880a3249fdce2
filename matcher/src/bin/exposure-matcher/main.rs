//! `exposure-matcher`: the matcher library on the command line, for phone-app developers and
//! outside checks. It derives identifiers and tags from keys (`derive`), makes signing keys and
//! signed batch fixtures (`keygen`, `build`), reads batches (`inspect`, `check`), downloads and
//! verifies a region's batches over HTTP like a phone (`fetch`), and runs the province matching
//! benchmark of DESIGN §9 (`bench-province`); it reads and writes Google/Apple export zips
//! (`gaen-inspect`, `gaen-export`, DESIGN §11).
//!
//! Exit status: 0 on success, 64 for bad usage (unknown flags, missing or malformed
//! arguments, invalid keys), 1 when a file cannot be read, parsed or verified, or when the
//! benchmark misses a planted exposure or raises a false alert.

mod batch_commands;
mod bench_province;
mod derive;
mod fetch;
mod gaen;
mod input;
mod json;
mod perf;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit status for bad usage (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

/// Exit status for any other failure.
const EXIT_FAILURE: u8 = 1;

/// Command-line tool of the exposure matcher: identifier schemes, tags and signed filter batches.
///
/// Exit status: 0 on success, 64 for bad usage (unknown or missing flags, malformed arguments,
/// invalid keys), 1 when a file cannot be read, parsed or verified, or when `bench-province`
/// misses a planted exposure or raises a false alert.
#[derive(Debug, Parser)]
#[command(name = "exposure-matcher", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Expand one diagnosis key into its identifiers; prints `slot_start<TAB>identifier_hex<TAB>tag_hex` per line.
    Derive(derive::DeriveArgs),
    /// Print a batch file's header, element count, bits per element and signature status.
    Inspect {
        /// Batch file to read.
        file: PathBuf,
        /// Public key (PEM, "BEGIN PUBLIC KEY") to verify the signature with.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<PathBuf>,
    },
    /// Print the tags of a tag list that the batch contains (filter hits), one per line.
    Check {
        /// Batch file to read.
        file: PathBuf,
        /// Tags to look up: one per line, as 64 hex digits or as `derive` output lines.
        #[arg(long, value_name = "FILE")]
        tags: PathBuf,
        /// Public key (PEM) to verify the batch with before looking anything up.
        #[arg(long, value_name = "PEM_FILE")]
        public_key: Option<PathBuf>,
    },
    /// Build a signed batch from tags: the fixture maker for phone-app developers.
    Build(batch_commands::BuildArgs),
    /// Generate a P-256 signing key: writes the private key (PKCS#8 PEM) and prints the public key PEM.
    Keygen {
        /// Where to write the private key; an existing file is never overwritten.
        #[arg(long, value_name = "PEM")]
        out: PathBuf,
    },
    /// Match a province's day (DESIGN §9: 751,416 phones × 10,000 observations) against the
    /// peak day's batch with rayon, confirm every hit, and report speed, accuracy and bytes.
    BenchProvince(bench_province::BenchProvinceArgs),
    /// Download a region's batches from the static layout (DESIGN §10: the server's HTTP
    /// listener or a CDN), verify each against v1/signing-keys, and write the new ones to a folder.
    Fetch(fetch::FetchArgs),
    /// Print a Google/Apple export zip's header fields, key counts and signature status
    /// (DESIGN §11); exit 1 when it is malformed or its signature does not verify.
    GaenInspect(gaen::InspectArgs),
    /// Build a signed Google/Apple export zip from a JSON key list (DESIGN §11).
    GaenExport(gaen::ExportArgs),
}

/// A failure, classified by exit status.
#[derive(Debug)]
enum Failure {
    /// The command line was wrong: exit 64.
    Usage(String),
    /// Anything else: exit 1.
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let status = if error.use_stderr() { EXIT_USAGE } else { 0 };
            // Printing help or an error can only fail if stdout/stderr is gone.
            let _ = error.print();
            return ExitCode::from(status);
        }
    };
    let outcome = match cli.command {
        Command::Derive(args) => derive::run(&args),
        Command::Inspect { file, public_key } => {
            batch_commands::inspect(&file, public_key.as_deref())
        }
        Command::Check {
            file,
            tags,
            public_key,
        } => batch_commands::check(&file, &tags, public_key.as_deref()),
        Command::Build(args) => batch_commands::build(&args),
        Command::Keygen { out } => batch_commands::keygen(&out),
        Command::BenchProvince(args) => bench_province::run(&args),
        Command::Fetch(args) => fetch::run(&args),
        Command::GaenInspect(args) => gaen::inspect(&args),
        Command::GaenExport(args) => gaen::export(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            eprintln!("\nFor more information, try '--help'.");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
