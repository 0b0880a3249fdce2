//! The validity period of an X.509 certificate (RFC 5280 §4.1.2.5), read from its DER: enough
//! of a parser to walk `Certificate → TBSCertificate → Validity` and to read its two times,
//! UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).

/// When a certificate may be used, Unix seconds, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore`.
    pub not_before: i64,
    /// `notAfter`.
    pub not_after: i64,
}

/// DER tags read here.
const SEQUENCE: u8 = 0x30;
const EXPLICIT_VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Returns the validity of the certificate `der`, or why it cannot be read.
pub fn of_certificate(der: &[u8]) -> Result<Validity, &'static str> {
    let (tag, certificate, _) = element(der)?;
    expect(tag, SEQUENCE)?;
    let (tag, mut tbs, _) = element(certificate)?;
    expect(tag, SEQUENCE)?;
    // version [0] EXPLICIT (absent in v1), serialNumber, signature, issuer, then validity.
    let (tag, _, rest) = element(tbs)?;
    let skip = if tag == EXPLICIT_VERSION { 3 } else { 2 };
    tbs = rest;
    for _ in 0..skip {
        tbs = element(tbs)?.2;
    }
    let (tag, validity, _) = element(tbs)?;
    expect(tag, SEQUENCE)?;
    let (tag, not_before, rest) = element(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    let not_after = time(tag, not_after)?;
    Ok(Validity {
        not_before,
        not_after,
    })
}

fn expect(tag: u8, wanted: u8) -> Result<(), &'static str> {
    if tag == wanted {
        Ok(())
    } else {
        Err("not an X.509 certificate")
    }
}

/// Splits one DER element off `input`: (tag, content, what follows).
fn element(input: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    const TRUNCATED: &str = "truncated DER";
    let (&tag, rest) = input.split_first().ok_or(TRUNCATED)?;
    let (&first, mut rest) = rest.split_first().ok_or(TRUNCATED)?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err("unsupported DER length");
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |length, byte| (length << 8) | usize::from(*byte))
    };
    if rest.len() < length {
        return Err(TRUNCATED);
    }
    let (content, after) = rest.split_at(length);
    Ok((tag, content, after))
}

/// Reads a UTCTime or GeneralizedTime in UTC (`Z`), as RFC 5280 requires them.
fn time(tag: u8, content: &[u8]) -> Result<i64, &'static str> {
    const BAD: &str = "bad certificate time";
    let text = std::str::from_utf8(content).map_err(|_| BAD)?;
    let digits = text.strip_suffix('Z').ok_or(BAD)?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(BAD);
    }
    let number = |range: std::ops::Range<usize>| -> Result<i64, &'static str> {
        digits.get(range).ok_or(BAD)?.parse().map_err(|_| BAD)
    };
    let (year, rest) = match (tag, digits.len()) {
        (UTC_TIME, 12) => {
            let two = number(0..2)?;
            (if two >= 50 { 1900 + two } else { 2000 + two }, 2)
        }
        (GENERALIZED_TIME, 14) => (number(0..4)?, 4),
        _ => return Err(BAD),
    };
    let field = |index: usize| number(rest + 2 * index..rest + 2 * index + 2);
    let (month, day, hour, minute, second) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(BAD);
    }
    Ok(days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the proleptic Gregorian date `year-month-day`.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    // Counted from 0000-03-01, so that the leap day ends a year.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_convert_to_unix_days() {
        // Values from `date -u -d YYYY-MM-DD +%s` / 86400.
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 2, 29), 11_016);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(2026, 12, 6), 20_793);
        assert_eq!(days_since_epoch(1950, 1, 1), -7_305);
    }

    #[test]
    fn both_time_forms_are_read() {
        assert_eq!(time(UTC_TIME, b"491231235959Z"), Ok(2_524_607_999));
        assert_eq!(time(UTC_TIME, b"500101000000Z"), Ok(-631_152_000));
        assert_eq!(
            time(GENERALIZED_TIME, b"20500101000000Z"),
            Ok(2_524_608_000)
        );
        assert!(time(UTC_TIME, b"491231235959").is_err());
        assert!(time(GENERALIZED_TIME, b"491231235959Z").is_err());
        assert!(time(UTC_TIME, b"491331235959Z").is_err());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(of_certificate(&[]).is_err());
        assert!(of_certificate(&[0x30, 0x05, 0x01]).is_err());
        assert!(of_certificate(&[0x04, 0x00]).is_err());
    }
}
