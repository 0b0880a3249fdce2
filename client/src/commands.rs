//! Carries out a parsed command line: reads the credential and files, makes the calls of
//! [`crate::calls`], prints the results on `out` and the reasons of a failure on `err`, and
//! returns the exit status (0 done, 1 refused or failed, 64 bad usage or bad file).
//!
//! This is the CLI's edge: nothing here prints the token, and upload codes appear only in the
//! output of `codes issue`.

use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

use exposure_proto::v1::ListBatchesRequest;
use exposure_proto::v1::distribution_client::DistributionClient;
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::calls::{self, CallError, UploadCredential};
use crate::cli::{BatchesCommand, Cli, CodesCommand, Command, Format, IssueArgs, UploadArgs};
use crate::credential::{BearerToken, UploadCode};
use crate::keys_file::KeysFile;
use crate::target::Target;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Done.
    Success,
    /// The server refused, could not be reached, or a batch failed verification.
    Failed,
    /// Bad usage or a bad file.
    Usage,
}

impl ExitStatus {
    /// Returns the process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 64,
        }
    }
}

/// Why a command stopped.
enum Failure {
    /// Exit 64: the command line or a file is wrong.
    Usage(String),
    /// Exit 1: the server or the network said no.
    Failed(String),
}

impl From<CallError> for Failure {
    fn from(error: CallError) -> Self {
        Failure::Failed(error.to_string())
    }
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Self {
        Failure::Failed(format!("cannot write the output: {error}"))
    }
}

/// Everything a command needs besides its own flags.
struct Context<'a> {
    cli: &'a Cli,
    env_token: Option<String>,
}

impl Context<'_> {
    fn token(&self) -> Result<BearerToken, Failure> {
        BearerToken::load(self.cli.token_file.as_deref(), self.env_token.clone())
            .map_err(|error| Failure::Usage(error.to_string()))
    }

    async fn channel(&self) -> Result<Channel, Failure> {
        // A staff tool talks to production servers: no loopback guard here.
        let target =
            Target::parse_with_ca_file(&self.cli.server, true, self.cli.ca_cert.as_deref())
                .map_err(|error| Failure::Usage(format!("--server: {error}")))?;
        Ok(calls::connect(&target).await?)
    }
}

/// Runs `cli`; `env_token` is the value of `EXPOSURE_TOKEN`, read by the caller.
pub async fn execute(
    cli: &Cli,
    env_token: Option<String>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitStatus {
    let context = Context { cli, env_token };
    let result = match &cli.command {
        Command::Codes(CodesCommand::Issue(args)) => issue(&context, args, out).await,
        Command::Upload(args) => upload(&context, args, out).await,
        Command::Batches(BatchesCommand::List(args)) => list(&context, args, out).await,
        Command::Batches(BatchesCommand::Download(args)) => download(&context, args, out).await,
        Command::Batches(BatchesCommand::Verify(args)) => verify(&context, args, out).await,
        Command::SigningKeys => signing_keys(&context, out).await,
    };
    let _ = out.flush();
    match result {
        Ok(()) => ExitStatus::Success,
        Err(Failure::Usage(message)) => {
            let _ = writeln!(err, "error: {message}");
            ExitStatus::Usage
        }
        Err(Failure::Failed(message)) => {
            let _ = writeln!(err, "error: {message}");
            ExitStatus::Failed
        }
    }
}

async fn issue(
    context: &Context<'_>,
    args: &IssueArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let token = context.token()?;
    let mut client = KeyUploadClient::new(context.channel().await?);
    let codes = calls::issue_codes(
        &mut client,
        &token,
        &args.region,
        u64::from(args.count),
        args.report_type.report_type(),
        args.valid_for,
    )
    .await?;
    match args.format {
        Format::Text => {
            for code in &codes {
                writeln!(out, "{}", code.code)?;
            }
        }
        Format::Json => {
            let codes: Vec<_> = codes
                .iter()
                .map(|code| {
                    json!({
                        "code": code.code,
                        "expires_at": code.expires_at,
                        "expires_at_utc": time_text(code.expires_at),
                    })
                })
                .collect();
            let document = json!({ "region": args.region, "codes": codes });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

async fn upload(
    context: &Context<'_>,
    args: &UploadArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let credential = match &args.code {
        Some(_) if context.cli.token_file.is_some() => {
            return Err(Failure::Usage(
                "--code uploads as a phone: leave out --token-file".to_owned(),
            ));
        }
        Some(code) => UploadCredential::Code(
            UploadCode::new(code).map_err(|error| Failure::Usage(format!("--code: {error}")))?,
        ),
        None => UploadCredential::Token(context.token()?),
    };
    let path = args.file.display();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|error| Failure::Usage(format!("cannot read {path}: {error}")))?;
    let file =
        KeysFile::parse(&text).map_err(|error| Failure::Usage(format!("{path}: {error}")))?;
    let request = file.to_request(calls::random_upload_id());
    let upload_id = request.upload_id.clone();
    let mut client = KeyUploadClient::new(context.channel().await?);
    let answer = calls::upload(&mut client, &credential, request).await?;
    write!(
        out,
        "upload {upload_id}: {} key(s) accepted, {} already known",
        answer.keys_accepted, answer.keys_already_known
    )?;
    if answer.keys_revoked > 0 {
        write!(out, ", {} revoked", answer.keys_revoked)?;
    }
    if answer.replay {
        write!(out, " (a replay: the server had this upload already)")?;
    }
    writeln!(out)?;
    Ok(())
}

async fn list(
    context: &Context<'_>,
    args: &crate::cli::ListArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut client = DistributionClient::new(context.channel().await?);
    let listing = client
        .list_batches(ListBatchesRequest {
            region: args.region.clone(),
            after_sequence: args.after,
            limit: 0,
        })
        .await
        .map_err(|status| {
            CallError::Refused(crate::refusal::Refusal::from_status("list", &status))
        })?
        .into_inner();
    if args.format == Format::Json {
        let batches: Vec<_> = listing
            .batches
            .iter()
            .map(|batch| {
                json!({
                    "batch_id": batch.batch_id, "sequence": batch.sequence,
                    "kind": batch.kind().as_str_name(), "created_at": batch.created_at,
                    "element_count": batch.element_count, "size_bytes": batch.size_bytes,
                    "key_id": batch.key_id, "supersedes": batch.supersedes,
                })
            })
            .collect();
        let document = json!({
            "region": args.region, "batches": batches,
            "latest_sequence": listing.latest_sequence, "more": listing.more,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>8}  {:<6}  {:<20}  {:>9}  {:>10}  batch id",
        "sequence", "kind", "created (UTC)", "elements", "bytes"
    )?;
    for batch in &listing.batches {
        writeln!(
            out,
            "{:>8}  {:<6}  {:<20}  {:>9}  {:>10}  {}",
            batch.sequence,
            batch.kind().as_str_name(),
            time_text(batch.created_at),
            batch.element_count,
            batch.size_bytes,
            batch.batch_id
        )?;
    }
    writeln!(
        out,
        "{} batch(es) after {}; latest sequence {}{}",
        listing.batches.len(),
        args.after,
        listing.latest_sequence,
        if listing.more {
            "; more follow (use --after)"
        } else {
            ""
        }
    )?;
    Ok(())
}

async fn download(
    context: &Context<'_>,
    args: &crate::cli::DownloadArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let mut client = DistributionClient::new(context.channel().await?);
    let bytes = calls::download_batch(&mut client, &args.id).await?;
    std::fs::write(&args.out, &bytes).map_err(|error| {
        Failure::Failed(format!("cannot write {}: {error}", args.out.display()))
    })?;
    writeln!(
        out,
        "batch {}: {} bytes written to {}",
        args.id,
        bytes.len(),
        args.out.display()
    )?;
    Ok(())
}

async fn verify(
    context: &Context<'_>,
    args: &crate::cli::VerifyArgs,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let path = args.file.display();
    let bytes = std::fs::read(&args.file)
        .map_err(|error| Failure::Usage(format!("cannot read {path}: {error}")))?;
    if let Err(error) = exposure_matcher::BatchFile::parse(&bytes) {
        return Err(Failure::Usage(format!("{path}: not a batch file: {error}")));
    }
    let mut client = DistributionClient::new(context.channel().await?);
    let keys = calls::signing_keys(&mut client).await?;
    let verified = calls::verify_batch(&bytes, &keys)
        .map_err(|reason| Failure::Failed(format!("{path}: does NOT verify: {reason}")))?;
    writeln!(
        out,
        "{path}: OK, signed by key {} ({} batch #{} of {}, {} elements, id {})",
        verified.key_id,
        verified.kind,
        verified.sequence,
        verified.region,
        verified.element_count,
        verified.batch_id
    )?;
    Ok(())
}

async fn signing_keys(context: &Context<'_>, out: &mut dyn Write) -> Result<(), Failure> {
    let mut client = DistributionClient::new(context.channel().await?);
    for key in calls::signing_keys(&mut client).await? {
        let state = if key.current {
            "  (current)".to_owned()
        } else if key.current_from != 0 {
            // The next key of a rotation's overlap, to register with Apple and Google.
            format!("  (next, current from {})", time_text(key.current_from))
        } else {
            String::new()
        };
        let version = if key.gaen_key_version.is_empty() {
            String::new()
        } else {
            format!("  gaen version {}", key.gaen_key_version)
        };
        writeln!(
            out,
            "{}  {}  created {}{version}{state}",
            key.key_id,
            key.algorithm,
            time_text(key.created_at),
        )?;
    }
    Ok(())
}

/// Returns Unix seconds as RFC 3339 UTC.
fn time_text(unix_seconds: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}
