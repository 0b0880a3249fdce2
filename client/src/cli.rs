//! The command line of `exposure-client`: global connection flags, the commands, their flags
//! and the `--help` text with an example for each. [`crate::commands`] carries them out.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use exposure_proto::v1::ReportType;

use crate::target::DEFAULT_TARGET;

/// Examples and exit statuses, at the end of `exposure-client --help`.
const MAIN_HELP: &str = "\
Examples:
  # Issue 20 codes for confirmed cases in Thái Bình, valid for 48 hours:
  EXPOSURE_TOKEN=... exposure-client codes issue --region VN-TB --count 20 --valid-for 48h
  # Upload a case's keys as the authority, from a keys file (format: client/README.md):
  exposure-client --token-file /run/secrets/token upload --file keys.json
  # Upload as the patient's phone does, with the code staff handed out:
  exposure-client upload --code 7KX2M-Q9D4P --file keys.json
  # List, download and verify published batches:
  exposure-client batches list --region VN-TB --after 120
  exposure-client batches download --id 3f5a... --out batch.bin
  exposure-client batches verify batch.bin
  exposure-client signing-keys

The token is read from --token-file or EXPOSURE_TOKEN, never from an argument, and never printed.

Exit status:
  0   done
  1   the server refused the request (its reasons are printed, one field per line), could not be
      reached, or a batch failed verification
  64  bad usage or a bad file (the line and column, or the field, is printed)";

/// The staff tool of a health authority: issues upload codes, uploads cases, and downloads and
/// verifies published batches.
#[derive(Debug, Parser)]
#[command(name = "exposure-client", version, about, after_help = MAIN_HELP)]
pub struct Cli {
    /// The server's gRPC URL (https:// needs --ca-cert).
    #[arg(long, global = true, env = "EXPOSURE_SERVER", default_value = DEFAULT_TARGET)]
    pub server: String,
    /// PEM CA certificate that signed the server's certificate, for an https:// server.
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// File holding the authority's bearer token; without it, EXPOSURE_TOKEN is read.
    #[arg(long, global = true, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-time upload codes that staff hand to confirmed patients (needs the token).
    #[command(subcommand)]
    Codes(CodesCommand),
    /// Uploads one case's keys from a keys file, with the token or with an upload code.
    #[command(after_help = "\
Examples:
  exposure-client --token-file token.txt upload --file keys.json
  exposure-client upload --code 7KX2M-Q9D4P --file keys.json

With --code the request authenticates as the patient's phone does (authorization: UploadCode):
the region in the file must be the code's, and the report type is the code's. The keys file
format, with a complete example, is in client/README.md.")]
    Upload(UploadArgs),
    /// Published batches: list, download, verify.
    #[command(subcommand)]
    Batches(BatchesCommand),
    /// Lists the keys that sign batches, the current one first.
    #[command(after_help = "Example:\n  exposure-client signing-keys")]
    SigningKeys,
}

/// `exposure-client codes ...`.
#[derive(Debug, Subcommand)]
pub enum CodesCommand {
    /// Issues codes and prints them, one per line (or JSON with their expiry).
    #[command(after_help = "\
Examples:
  exposure-client codes issue --region VN-TB --count 5
  exposure-client codes issue --region VN-TB --count 1 --report-type clinical --valid-for 7d --format json")]
    Issue(IssueArgs),
}

/// Flags of `codes issue`.
#[derive(Debug, Args)]
pub struct IssueArgs {
    /// Region the codes upload for; the authority must be allowed it.
    #[arg(long)]
    pub region: String,
    /// How many codes, 1 to 100.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: u32,
    /// What the keys uploaded with these codes report.
    #[arg(long, value_enum, default_value_t = CodeReportType::ConfirmedTest)]
    pub report_type: CodeReportType,
    /// How long the codes stay valid, at most 7 days (e.g. 24h, 3d).
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Report types a code may carry (a withdrawal needs the authority's own token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CodeReportType {
    /// A laboratory-confirmed case.
    ConfirmedTest,
    /// A clinical diagnosis without a test.
    Clinical,
    /// A self-reported case.
    SelfReport,
}

impl CodeReportType {
    /// Returns the API's report type.
    pub fn report_type(self) -> ReportType {
        match self {
            CodeReportType::ConfirmedTest => ReportType::ConfirmedTest,
            CodeReportType::Clinical => ReportType::ConfirmedClinicalDiagnosis,
            CodeReportType::SelfReport => ReportType::SelfReport,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people (codes: one per line, nothing else).
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// Flags of `upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The keys file (JSON; format in client/README.md).
    #[arg(long, value_name = "FILE")]
    pub file: PathBuf,
    /// Upload with this one-time code instead of the token, as a phone does (not with
    /// --token-file).
    #[arg(long, value_name = "XXXXX-XXXXX")]
    pub code: Option<String>,
}

/// `exposure-client batches ...`.
#[derive(Debug, Subcommand)]
pub enum BatchesCommand {
    /// Lists a region's published batches, oldest first.
    #[command(after_help = "Example:\n  exposure-client batches list --region VN-TB --after 120")]
    List(ListArgs),
    /// Downloads one batch file and checks that it hashes to its id.
    #[command(
        after_help = "Example:\n  exposure-client batches download --id 3f5a... --out batch.bin"
    )]
    Download(DownloadArgs),
    /// Verifies a batch file's signature against the server's signing keys.
    #[command(after_help = "Example:\n  exposure-client batches verify batch.bin")]
    Verify(VerifyArgs),
}

/// Flags of `batches list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Region to list.
    #[arg(long)]
    pub region: String,
    /// Only batches with a sequence greater than this.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Flags of `batches download`.
#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The batch id (lowercase hex, from `batches list`).
    #[arg(long)]
    pub id: String,
    /// Where to write the file.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Flags of `batches verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The batch file to verify.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("exposure-client").chain(arguments.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn there_is_no_token_flag() {
        assert!(parse(&["--token", "t", "signing-keys"]).is_err());
        let cli = parse(&["signing-keys", "--token-file", "t.txt"]).expect("global flag");
        assert_eq!(cli.token_file, Some(PathBuf::from("t.txt")));
    }

    #[test]
    fn codes_issue_flags_parse_and_are_bounded() {
        let cli = parse(&[
            "codes",
            "issue",
            "--region",
            "VN-TB",
            "--count",
            "3",
            "--valid-for",
            "48h",
            "--report-type",
            "self-report",
            "--format",
            "json",
        ])
        .expect("valid");
        let Command::Codes(CodesCommand::Issue(args)) = cli.command else {
            panic!("codes issue")
        };
        assert_eq!(args.count, 3);
        assert_eq!(args.valid_for, Duration::from_secs(48 * 3600));
        assert_eq!(args.report_type.report_type(), ReportType::SelfReport);
        assert!(parse(&["codes", "issue", "--region", "VN-TB", "--count", "0"]).is_err());
        assert!(parse(&["codes", "issue", "--region", "VN-TB", "--count", "101"]).is_err());
    }
}
