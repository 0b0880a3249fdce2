//! `exposure-loadtest code-guessing`: guessing upload codes from many client networks beside
//! patients uploading with valid codes (issue 18, hole 4; DESIGN.md section 12).
//!
//! The tool poses as a trusted proxy: the server runs with `--trusted-proxies` covering the
//! tool's address (`127.0.0.0/8` on loopback), and every connection the tool opens starts with
//! a PROXY protocol v2 header ([`crate::proxy_header`]) naming a client. Guessers claim
//! `--networks` IPv6 /64s (`2001:db8::/32`, one connection each) and send random codes from
//! `--guess-concurrency` workers, as fast as the server answers; patients claim one fresh IPv4
//! address each (`100.64.0.0/10`) and upload a case with a valid code, `--uploads` of them
//! spread evenly over `--duration`. The authority that issues the codes first claims
//! `192.0.2.10`.
//!
//! The run has two phases of `--duration` each: patients alone (quiet), then patients beside the
//! guessers. The report gives, per phase, the patients' success rate and latency, and what the
//! guessers got back; the exit status is 2 when the success rate under attack is below
//! `--min-success-percent`. Everything is bounded: `--duration`, `--max-guesses`, `--timeout`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exposure_client::credential::{BearerToken, UploadCode};
use exposure_proto::v1::key_upload_client::KeyUploadClient;
use rand::Rng as _;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

use crate::cli::{ExitStatus, Format};
use crate::client::CONNECT_TIMEOUT;
use crate::proxy_header;
use crate::scenario::phone_upload::CodePool;
use crate::scenario::upload::{UploadIds, case_request, today};
use crate::target::{DEFAULT_TARGET, Target};

/// Where the claimed connections say they arrived (the proxy's own listening address); the
/// server does not use it.
const PROXY_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 443);
/// The authority's claimed address.
const AUTHORITY_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
/// Crockford's base32 alphabet, which codes are written in.
const CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Flags of `exposure-loadtest code-guessing`.
#[derive(Debug, Clone, clap::Args)]
pub struct CodeGuessingArgs {
    /// The server's gRPC URL; a non-loopback host needs --allow-remote. The server must trust
    /// this machine's address as a proxy (`--trusted-proxies 127.0.0.0/8` on loopback).
    #[arg(long, default_value = DEFAULT_TARGET)]
    pub target: String,
    /// Allows a target that is not this machine.
    #[arg(long)]
    pub allow_remote: bool,
    /// PEM CA certificate that signed the server's certificate; needed for an https:// target.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// Health-authority bearer token, to issue the patients' codes (never printed).
    #[arg(long, env = "EXPOSURE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Region of the codes.
    #[arg(long, default_value = crate::runner::DEFAULT_REGION)]
    pub region: String,
    /// Wall time of each phase: patients alone, then patients beside the guessers.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Client networks (IPv6 /64s) the guessers claim, one connection each.
    #[arg(long, default_value_t = 200)]
    pub networks: usize,
    /// Guesses in flight at once.
    #[arg(long, default_value_t = 64)]
    pub guess_concurrency: usize,
    /// Guesses sent at most.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_guesses: u64,
    /// Patients' code uploads in each phase, each from its own network.
    #[arg(long, default_value_t = 100)]
    pub uploads: u64,
    /// Per-request timeout.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Exit status 2 when the patients' success rate under attack is below this (percent).
    #[arg(long, default_value_t = 99.9)]
    pub min_success_percent: f64,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Summary)]
    pub format: Format,
    /// Writes the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// What one run found.
#[derive(Debug, Clone, Serialize)]
pub struct CodeGuessingReport {
    /// Client networks the guessers claimed.
    pub networks: usize,
    /// Patients alone.
    pub quiet: Phase,
    /// Patients beside the guessers.
    pub under_attack: Phase,
}

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Wall time of the phase.
    pub seconds: f64,
    /// The patients' uploads.
    pub patients: Patients,
    /// The guessers' attempts (all zero in the quiet phase).
    pub guesses: Guesses,
}

/// The patients' uploads of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Patients {
    /// Uploads sent.
    pub sent: u64,
    /// Uploads answered OK.
    pub succeeded: u64,
    /// `succeeded / sent`, in percent (100 when nothing was sent).
    pub success_percent: f64,
    /// Median latency of the uploads, milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Failed uploads by gRPC status code.
    pub failures: BTreeMap<String, u64>,
}

/// The guessers' attempts of one phase.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Guesses {
    /// Guesses sent.
    pub sent: u64,
    /// Answered UNAUTHENTICATED: looked up and wrong.
    pub unauthenticated: u64,
    /// Answered RESOURCE_EXHAUSTED: refused before a lookup.
    pub resource_exhausted: u64,
    /// Answered anything else (OK would be a code guessed right).
    pub other: u64,
    /// Guesses that were looked up, per second.
    pub looked_up_per_second: f64,
}

/// Runs the attack and writes its report; returns the exit status.
pub async fn execute(args: &CodeGuessingArgs) -> anyhow::Result<ExitStatus> {
    let report = run(args).await?;
    let rendered = match args.format {
        Format::Summary => render(&report),
        Format::Json => {
            let mut json =
                serde_json::to_string_pretty(&report).context("cannot encode the report")?;
            json.push('\n');
            json
        }
    };
    match &args.output {
        Some(path) => std::fs::write(path, rendered)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(rendered.as_bytes())
                .context("cannot write the report")?;
            stdout.flush().context("cannot write the report")?;
        }
    }
    let success = report.under_attack.patients.success_percent;
    if success < args.min_success_percent {
        eprintln!(
            "patients' success under attack {success:.2} % is below --min-success-percent {}",
            args.min_success_percent
        );
        return Ok(ExitStatus::SloBreached);
    }
    Ok(ExitStatus::Success)
}

/// Runs both phases against the target and returns the report.
pub async fn run(args: &CodeGuessingArgs) -> anyhow::Result<CodeGuessingReport> {
    let target =
        Target::parse_with_ca_file(&args.target, args.allow_remote, args.ca_cert.as_deref())?;
    let token = BearerToken::new(&args.token).context("--token")?;
    let endpoint = target
        .endpoint()
        .with_context(|| format!("cannot set up TLS for {target}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(args.timeout)
        .tcp_nodelay(true);
    let authority = claimed_channel(&endpoint, IpAddr::V4(AUTHORITY_ADDRESS))
        .await
        .with_context(|| {
            format!("cannot connect to {target} as a proxy: is the server running with --trusted-proxies covering this machine?")
        })?;
    let codes = CodePool::issue(
        &mut KeyUploadClient::new(authority),
        &token,
        &args.region,
        args.uploads * 2,
    )
    .await?;
    let quiet = phase(&endpoint, args, &codes, 0, 0).await?;
    let under_attack = phase(&endpoint, args, &codes, args.networks, args.uploads).await?;
    Ok(CodeGuessingReport {
        networks: args.networks,
        quiet,
        under_attack,
    })
}

/// Opens a channel whose connections claim to come from `client`.
async fn claimed_channel(endpoint: &Endpoint, client: IpAddr) -> anyhow::Result<Channel> {
    let header = proxy_header::proxy(SocketAddr::new(client, 40_000), PROXY_ADDRESS);
    Ok(proxy_header::channel(endpoint, header, None).await?)
}

/// Returns the address the `index`-th patient claims: one of `100.64.0.0/10`.
fn patient_address(index: u64) -> IpAddr {
    let offset = u32::try_from(index % (1 << 22)).unwrap_or(0);
    IpAddr::V4(Ipv4Addr::from_bits(
        Ipv4Addr::new(100, 64, 0, 0).to_bits() + offset,
    ))
}

/// Returns a random address in the `index`-th guessing /64 of `2001:db8::/32`.
fn guesser_address(index: usize) -> IpAddr {
    let index = index as u128 & 0xFFFF_FFFF;
    let prefix = (0x2001_0db8_u128 << 96) | (index << 64);
    IpAddr::V6(Ipv6Addr::from_bits(
        prefix | u128::from(rand::thread_rng().r#gen::<u64>()),
    ))
}

/// Returns a random code, almost surely never issued (50 bits).
fn random_code() -> UploadCode {
    let mut rng = rand::thread_rng();
    let code: String = (0..10)
        .map(|_| char::from(CODE_ALPHABET[rng.gen_range(0..32)]))
        .collect();
    match UploadCode::new(&code) {
        Ok(code) => code,
        Err(_) => unreachable!("10 Crockford characters are a code's shape"),
    }
}

/// Runs one phase: `uploads` patients spread over the duration (numbered from `first_patient`),
/// beside guessers from `networks` networks (none: the quiet phase).
async fn phase(
    endpoint: &Endpoint,
    args: &CodeGuessingArgs,
    codes: &CodePool,
    networks: usize,
    first_patient: u64,
) -> anyhow::Result<Phase> {
    let mut guess_channels = Vec::with_capacity(networks);
    for network in 0..networks {
        guess_channels.push(
            claimed_channel(endpoint, guesser_address(network))
                .await
                .context("cannot open a guesser's connection (raise --max-grpc-connections?)")?,
        );
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let guesses = Arc::new(GuessCounters::default());
    let upload_ids = Arc::new(UploadIds::new());
    let mut guessers = JoinSet::new();
    if !guess_channels.is_empty() {
        let channels = Arc::new(guess_channels);
        let next = Arc::new(AtomicU64::new(0));
        for _ in 0..args.guess_concurrency.max(1) {
            let (channels, next, guesses) = (channels.clone(), next.clone(), guesses.clone());
            let (region, upload_ids, max) =
                (args.region.clone(), upload_ids.clone(), args.max_guesses);
            guessers.spawn(async move {
                loop {
                    let turn = next.fetch_add(1, Ordering::Relaxed);
                    if turn >= max || Instant::now() >= deadline {
                        break;
                    }
                    let channel = channels[turn as usize % channels.len()].clone();
                    let mut request = Request::new(case_request(
                        &mut rand::thread_rng(),
                        &region,
                        upload_ids.next_id(),
                        today(),
                    ));
                    random_code().authorize(&mut request);
                    let code = match KeyUploadClient::new(channel)
                        .upload_diagnosis_keys(request)
                        .await
                    {
                        Ok(_) => Code::Ok,
                        Err(status) => status.code(),
                    };
                    guesses.count(code);
                }
            });
        }
    }
    let mut patients = JoinSet::new();
    let spacing = args.duration.div_f64(args.uploads.max(1) as f64);
    for index in 0..args.uploads {
        tokio::time::sleep_until((started + spacing.mul_f64(index as f64)).into()).await;
        let Some(code) = codes.take() else { break };
        let (endpoint, region) = (endpoint.clone(), args.region.clone());
        let upload_ids = upload_ids.clone();
        patients.spawn(async move {
            let channel = claimed_channel(&endpoint, patient_address(first_patient + index)).await;
            let mut request = Request::new(case_request(
                &mut rand::thread_rng(),
                &region,
                upload_ids.next_id(),
                today(),
            ));
            code.authorize(&mut request);
            let sent = Instant::now();
            let code = match channel {
                Ok(channel) => match KeyUploadClient::new(channel)
                    .upload_diagnosis_keys(request)
                    .await
                {
                    Ok(_) => Code::Ok,
                    Err(status) => status.code(),
                },
                Err(_) => Code::Unavailable,
            };
            (code, sent.elapsed())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = patients.join_next().await {
        outcomes.push(outcome.context("a patient's task failed")?);
    }
    while let Some(done) = guessers.join_next().await {
        done.context("a guesser's task failed")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Phase {
        seconds,
        patients: summarize_patients(&mut outcomes),
        guesses: guesses.summary(seconds),
    })
}

#[derive(Debug, Default)]
struct GuessCounters {
    sent: AtomicU64,
    unauthenticated: AtomicU64,
    resource_exhausted: AtomicU64,
    other: AtomicU64,
}

impl GuessCounters {
    fn count(&self, code: Code) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let counter = match code {
            Code::Unauthenticated => &self.unauthenticated,
            Code::ResourceExhausted => &self.resource_exhausted,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(&self, seconds: f64) -> Guesses {
        let unauthenticated = self.unauthenticated.load(Ordering::Relaxed);
        Guesses {
            sent: self.sent.load(Ordering::Relaxed),
            unauthenticated,
            resource_exhausted: self.resource_exhausted.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
            looked_up_per_second: unauthenticated as f64 / seconds.max(f64::EPSILON),
        }
    }
}

/// Summarizes the patients' outcomes (sorted in place by latency).
fn summarize_patients(outcomes: &mut [(Code, Duration)]) -> Patients {
    outcomes.sort_by_key(|(_, latency)| *latency);
    let sent = outcomes.len() as u64;
    let succeeded = outcomes
        .iter()
        .filter(|(code, _)| *code == Code::Ok)
        .count() as u64;
    let mut failures = BTreeMap::new();
    for (code, _) in outcomes.iter().filter(|(code, _)| *code != Code::Ok) {
        *failures.entry(format!("{code:?}")).or_insert(0) += 1;
    }
    // Nearest-rank percentiles.
    let percentile = |fraction: f64| {
        if outcomes.is_empty() {
            return 0.0;
        }
        let rank = ((fraction * outcomes.len() as f64).ceil() as usize).clamp(1, outcomes.len());
        outcomes[rank - 1].1.as_secs_f64() * 1000.0
    };
    Patients {
        sent,
        succeeded,
        success_percent: if sent == 0 {
            100.0
        } else {
            succeeded as f64 * 100.0 / sent as f64
        },
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        failures,
    }
}

/// Renders the report as text.
pub fn render(report: &CodeGuessingReport) -> String {
    let mut text = format!(
        "Code guessing from {} client networks beside patients' code uploads\n",
        report.networks
    );
    for (name, phase) in [
        ("quiet", &report.quiet),
        ("under attack", &report.under_attack),
    ] {
        let patients = &phase.patients;
        let guesses = &phase.guesses;
        text.push_str(&format!(
            "  {name} ({:.1} s): patients {}/{} OK ({:.2} %), p50 {:.1} ms, p99 {:.1} ms{}\n",
            phase.seconds,
            patients.succeeded,
            patients.sent,
            patients.success_percent,
            patients.p50_ms,
            patients.p99_ms,
            if patients.failures.is_empty() {
                String::new()
            } else {
                format!(", failures {:?}", patients.failures)
            }
        ));
        if guesses.sent > 0 {
            text.push_str(&format!(
                "    guesses {}: {} looked up and wrong ({:.1}/s), {} refused RESOURCE_EXHAUSTED, {} other\n",
                guesses.sent,
                guesses.unauthenticated,
                guesses.looked_up_per_second,
                guesses.resource_exhausted,
                guesses.other
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claimed_addresses_are_in_their_documentation_ranges_and_distinct() {
        assert_eq!(
            patient_address(0),
            "100.64.0.0".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            patient_address(257),
            "100.64.1.1".parse::<IpAddr>().expect("ip")
        );
        let IpAddr::V6(first) = guesser_address(1) else {
            panic!("IPv6")
        };
        assert_eq!(first.segments()[..4], [0x2001, 0x0db8, 0, 1]);
        let IpAddr::V6(other) = guesser_address(0x1_0002) else {
            panic!("IPv6")
        };
        assert_eq!(other.segments()[..4], [0x2001, 0x0db8, 1, 2]);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut outcomes: Vec<(Code, Duration)> = (1..=100)
            .map(|ms| (Code::Ok, Duration::from_millis(ms)))
            .collect();
        outcomes[0].0 = Code::ResourceExhausted;
        let patients = summarize_patients(&mut outcomes);
        assert_eq!(patients.sent, 100);
        assert_eq!(patients.succeeded, 99);
        assert!((patients.success_percent - 99.0).abs() < 1e-9);
        assert!((patients.p50_ms - 50.0).abs() < 1e-9);
        assert!((patients.p99_ms - 99.0).abs() < 1e-9);
        assert_eq!(patients.failures.get("ResourceExhausted"), Some(&1));
    }
}
