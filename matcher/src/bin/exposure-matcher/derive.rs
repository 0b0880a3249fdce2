//! `derive`: one diagnosis key, given on the command line, expanded into
//! `slot_start<TAB>identifier_hex<TAB>tag_hex` lines (DESIGN §2, §3).

use std::io::{BufWriter, Write};

use anyhow::Context;
use clap::{Args, ValueEnum};
use exposure_matcher::scheme::{
    BLUEZONE_DEFAULT_SUB_KEYS_PER_DAY, GAEN_MAX_ROLLING_PERIOD, SECONDS_PER_DAY,
};
use exposure_matcher::{BluezoneKey, DiagnosisKey, GaenKey, StaticKey, Tag};

use crate::Failure;

/// The scheme of the key to derive.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SchemeArg {
    /// GAEN temporary exposure key: --key (16 bytes hex) --start-interval [--period].
    Gaen,
    /// Bluezone daily key: --key (32 bytes hex) --day [--sub-keys] [--from --until].
    Bluezone,
    /// Static identifier: --id (hex) --from --until.
    Static,
}

/// Arguments of `derive`; which ones apply depends on `--scheme`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
    exposure-matcher derive --scheme gaen --key 75c734c6dd1a782de7a965da5eb93125 --start-interval 2642976 --period 2\n  \
    exposure-matcher derive --scheme bluezone --key 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f --day 20454\n  \
    exposure-matcher derive --scheme static --id 414231324344 --from 1767225600 --until 1767226500")]
pub struct DeriveArgs {
    /// Identifier scheme of the key.
    #[arg(long, value_enum)]
    scheme: SchemeArg,
    /// Key bytes in hex: the 16-byte TEK (gaen) or the 32-byte daily key (bluezone).
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// GAEN rolling_start_interval_number (Unix seconds / 600).
    #[arg(long, value_name = "N")]
    start_interval: Option<u32>,
    /// GAEN rolling_period, 1..=144 [default: 144].
    #[arg(long, value_name = "P")]
    period: Option<u32>,
    /// Bluezone day_number (Unix seconds / 86400).
    #[arg(long, value_name = "N")]
    day: Option<u32>,
    /// Bluezone sub_keys_per_day, must divide 86400 [default: 96].
    #[arg(long, value_name = "N")]
    sub_keys: Option<u32>,
    /// Static identifier bytes in hex (1..=32 bytes), e.g. 414231324344 for ASCII "AB12CD".
    #[arg(long, value_name = "HEX")]
    id: Option<String>,
    /// Start of the contagious window, Unix seconds (bluezone: default start of the day).
    #[arg(long, value_name = "UNIX")]
    from: Option<u64>,
    /// End of the contagious window, Unix seconds, exclusive (bluezone: default end of the day).
    #[arg(long, value_name = "UNIX")]
    until: Option<u64>,
}

/// Prints the identifiers and tags of the key the arguments describe.
pub fn run(args: &DeriveArgs) -> Result<(), Failure> {
    let key = key_from_args(args)?;
    let scheme = key.scheme();
    let identifiers = key
        .identifiers()
        .map_err(|error| Failure::Usage(format!("invalid key: {error}")))?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for slot_identifier in identifiers {
        let tag = Tag::compute(
            scheme,
            slot_identifier.slot_start,
            &slot_identifier.identifier,
        );
        writeln!(
            out,
            "{}\t{}\t{}",
            slot_identifier.slot_start,
            hex::encode(&slot_identifier.identifier),
            tag
        )
        .context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

/// Builds the key, rejecting flags that are missing or do not belong to the scheme.
fn key_from_args(args: &DeriveArgs) -> Result<DiagnosisKey, Failure> {
    let flags_given = [
        ("--key", args.key.is_some()),
        ("--start-interval", args.start_interval.is_some()),
        ("--period", args.period.is_some()),
        ("--day", args.day.is_some()),
        ("--sub-keys", args.sub_keys.is_some()),
        ("--id", args.id.is_some()),
        ("--from", args.from.is_some()),
        ("--until", args.until.is_some()),
    ];
    let (scheme_name, allowed): (&str, &[&str]) = match args.scheme {
        SchemeArg::Gaen => ("gaen", &["--key", "--start-interval", "--period"]),
        SchemeArg::Bluezone => (
            "bluezone",
            &["--key", "--day", "--sub-keys", "--from", "--until"],
        ),
        SchemeArg::Static => ("static", &["--id", "--from", "--until"]),
    };
    if let Some((flag, _)) = flags_given
        .iter()
        .find(|(flag, given)| *given && !allowed.contains(flag))
    {
        return Err(Failure::Usage(format!(
            "{flag} does not apply to --scheme {scheme_name}"
        )));
    }
    let required =
        |flag: &str| Failure::Usage(format!("{flag} is required for --scheme {scheme_name}"));
    match args.scheme {
        SchemeArg::Gaen => Ok(DiagnosisKey::Gaen(GaenKey {
            key_data: hex_array(
                "--key",
                args.key.as_deref().ok_or_else(|| required("--key"))?,
            )?,
            rolling_start_interval_number: args
                .start_interval
                .ok_or_else(|| required("--start-interval"))?,
            rolling_period: args.period.unwrap_or(GAEN_MAX_ROLLING_PERIOD),
        })),
        SchemeArg::Bluezone => {
            let day_number = args.day.ok_or_else(|| required("--day"))?;
            let day_start = u64::from(day_number) * SECONDS_PER_DAY;
            Ok(DiagnosisKey::Bluezone(BluezoneKey {
                daily_key: hex_array(
                    "--key",
                    args.key.as_deref().ok_or_else(|| required("--key"))?,
                )?,
                day_number,
                sub_keys_per_day: args.sub_keys.unwrap_or(BLUEZONE_DEFAULT_SUB_KEYS_PER_DAY),
                contagious_from: args.from.unwrap_or(day_start),
                contagious_until: args.until.unwrap_or(day_start + SECONDS_PER_DAY),
            }))
        }
        SchemeArg::Static => {
            let id = args.id.as_deref().ok_or_else(|| required("--id"))?;
            Ok(DiagnosisKey::Static(StaticKey {
                identifier: hex::decode(id.trim())
                    .map_err(|_| Failure::Usage(format!("--id must be hex, got {id:?}")))?,
                contagious_from: args.from.ok_or_else(|| required("--from"))?,
                contagious_until: args.until.ok_or_else(|| required("--until"))?,
            }))
        }
    }
}

/// Decodes exactly `N` bytes of hex given to `flag`.
fn hex_array<const N: usize>(flag: &str, text: &str) -> Result<[u8; N], Failure> {
    let mut bytes = [0u8; N];
    hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| {
        Failure::Usage(format!(
            "{flag} must be {N} bytes of hex ({} digits), got {text:?}",
            2 * N
        ))
    })?;
    Ok(bytes)
}
