//! The statistics page of an authority (DESIGN.md section 13), for its viewers and admins: per
//! UTC day over retention, the codes issued, used and expired unused, the uploads by bearer
//! token and by code, the keys they stored, and the median time from a code's issue to its
//! upload (over the codes used that day), and how many of its keys were published in an hourly
//! batch that day (padding is never counted); as a table, a bar chart drawn on the server
//! as SVG (no script), and CSV. A count below `--stats-min-count` is shown as "< N" (and drawn
//! as no bar), so that small numbers of cases are not told.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use http::{StatusCode, header};

use super::login::internal;
use super::session::{Request, SignedIn, signed_in};
use super::{ConsoleState, blocking, pages};
use crate::storage::console::{ROLE_ADMIN, ROLE_VIEWER};
use crate::storage::{StorageError, Store};
use exposure_proto::v1::BatchKind;

/// Seconds of a UTC day.
const DAY: u64 = 86_400;

/// One UTC day's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DayCounts {
    /// Codes issued.
    pub issued: u64,
    /// Codes used (each by one upload).
    pub used: u64,
    /// Codes that expired unused.
    pub expired: u64,
    /// Uploads with the authority's bearer token.
    pub token_uploads: u64,
    /// Uploads with one of its codes.
    pub code_uploads: u64,
    /// Keys those uploads stored.
    pub keys: u64,
    /// Keys of the authority published that day: those in the hourly batches made that day
    /// (a daily roll-up publishes them again and is not counted twice; synthetic keys never).
    pub keys_published: u64,
    /// Median minutes from issue to upload of the codes used that day (the lower middle of an
    /// even count); `None` when none was used.
    pub median_minutes_to_upload: Option<u64>,
}

impl DayCounts {
    /// The counts in the order of the table's and the CSV's columns.
    pub fn columns(&self) -> [u64; 7] {
        [
            self.issued,
            self.used,
            self.expired,
            self.token_uploads,
            self.code_uploads,
            self.keys,
            self.keys_published,
        ]
    }
}

/// Returns the counts of `authority_id` per UTC day (day number → counts), oldest first.
pub fn daily_counts(
    store: &Store,
    authority_id: &str,
    now: u64,
) -> Result<BTreeMap<u64, DayCounts>, StorageError> {
    let mut days: BTreeMap<u64, DayCounts> = BTreeMap::new();
    let mut waits: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut own_codes = HashSet::new();
    for (hash, code) in store.hashed_codes_of_authority(authority_id)? {
        own_codes.insert(hex::encode(hash));
        days.entry(code.issued_at / DAY).or_default().issued += 1;
        if code.consumed_at > 0 {
            days.entry(code.consumed_at / DAY).or_default().used += 1;
            waits
                .entry(code.consumed_at / DAY)
                .or_default()
                .push(code.consumed_at.saturating_sub(code.issued_at));
        } else if code.expires_at < now {
            days.entry(code.expires_at / DAY).or_default().expired += 1;
        }
    }
    for (scope, upload) in store.uploads()? {
        let by_code = match scope.strip_prefix("code:") {
            Some(hash) if own_codes.contains(hash) => true,
            Some(_) => continue,
            None if scope == authority_id => false,
            None => continue,
        };
        let day = days.entry(upload.created_at / DAY).or_default();
        if by_code {
            day.code_uploads += 1;
        } else {
            day.token_uploads += 1;
        }
        day.keys += upload
            .response
            .map_or(0, |response| u64::from(response.keys_accepted));
    }
    let own_keys: HashSet<u64> = store
        .key_sequences_of_authority(authority_id)?
        .into_iter()
        .collect();
    for batch in store.all_batches()? {
        let Some(info) = batch.info.filter(|info| info.kind() == BatchKind::Hourly) else {
            continue;
        };
        let published = batch
            .key_sequences
            .iter()
            .filter(|sequence| own_keys.contains(sequence))
            .count() as u64;
        if published > 0 {
            days.entry(info.created_at / DAY)
                .or_default()
                .keys_published += published;
        }
    }
    for (day, mut seconds) in waits {
        if let Some(counts) = days.get_mut(&day) {
            counts.median_minutes_to_upload = median(&mut seconds).map(|median| median / 60);
        }
    }
    Ok(days)
}

/// Returns the median of `values` (the lower middle of an even count), sorting them.
fn median(values: &mut [u64]) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    Some(values[(values.len() - 1) / 2])
}

/// Returns the median wait as shown: minutes, or nothing when the day's used codes are fewer
/// than `min` (a median of few codes tells about few patients) or none was used.
pub fn shown_median(counts: &DayCounts, min: u64) -> String {
    match counts.median_minutes_to_upload {
        Some(minutes) if counts.used >= min => minutes.to_string(),
        _ => String::new(),
    }
}

/// Returns a count as shown: itself, or "< min" below `min`.
pub fn shown(count: u64, min: u64) -> String {
    if count < min {
        format!("< {min}")
    } else {
        count.to_string()
    }
}

/// Returns the signed-in viewer or admin and their authority's counts, or the answer for
/// anyone else.
async fn counts_for(
    state: &Arc<ConsoleState>,
    request: &Request,
) -> Result<(SignedIn, BTreeMap<u64, DayCounts>), Response> {
    let t = request.lang.text();
    let signed = match signed_in(state, request).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Err(Redirect::to("/login").into_response()),
        Err(error) => return Err(internal(request, &error)),
    };
    if !(signed.user.has_role(ROLE_VIEWER) || signed.user.has_role(ROLE_ADMIN)) {
        return Err(pages::message(
            request,
            StatusCode::FORBIDDEN,
            t.forbidden_heading,
            t.cannot_see,
        ));
    }
    let store = state.store.clone();
    let authority = signed.user.authority_id.clone();
    let now = state.clock.now();
    match blocking(move || daily_counts(&store, &authority, now)).await {
        Ok(days) => Ok((signed, days)),
        Err(error) => Err(internal(request, &error)),
    }
}

/// `GET /stats`: the table and the chart.
pub async fn stats(State(state): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (signed, days) = match counts_for(&state, &request).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let min = state.stats_min_count;
    let chart = chart_svg(&days, min, request.lang.text());
    let page = pages::stats(&request, &signed, &days, min, &chart);
    pages::respond(&request, StatusCode::OK, page)
}

/// `GET /stats.csv`: the table as CSV, with the same threshold.
pub async fn stats_csv(State(state): State<Arc<ConsoleState>>, request: Request) -> Response {
    let (_, days) = match counts_for(&state, &request).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let min = state.stats_min_count;
    let mut csv = String::from(
        "day,codes_issued,codes_used,codes_expired_unused,uploads_by_token,uploads_by_code,keys,keys_published,median_minutes_code_to_upload\n",
    );
    for (day, counts) in &days {
        csv.push_str(&day_text(*day));
        for count in counts.columns() {
            csv.push(',');
            csv.push_str(&shown(count, min));
        }
        csv.push(',');
        csv.push_str(&shown_median(counts, min));
        csv.push('\n');
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"statistics.csv\"",
            ),
        ],
        csv,
    )
        .into_response()
}

/// Returns a UTC day number as `YYYY-MM-DD`.
pub fn day_text(day: u64) -> String {
    pages::utc_time(day * DAY)[..10].to_owned()
}

/// Returns the bar chart of codes issued and codes used per day, as inline SVG: two bars a
/// day, heights to scale, a count below `min` drawn as no bar. Sizes only, no script, no style
/// attribute (the content security policy allows neither).
pub fn chart_svg(days: &BTreeMap<u64, DayCounts>, min: u64, t: &super::i18n::Text) -> String {
    const HEIGHT: u64 = 160;
    const BAR: u64 = 8;
    let visible = |count: u64| if count < min { 0 } else { count };
    let top = days
        .values()
        .flat_map(|counts| [visible(counts.issued), visible(counts.used)])
        .max()
        .unwrap_or(0)
        .max(1);
    let width = (days.len() as u64).max(1) * (3 * BAR) + 2 * BAR;
    let mut svg = format!(
        "<svg id=\"stats-chart\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {}\" \
         width=\"100%\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
        HEIGHT + 2,
        HEIGHT + 2,
        t.chart_label
    );
    for (index, (day, counts)) in days.iter().enumerate() {
        let x = BAR + index as u64 * 3 * BAR;
        for (offset, count, fill, name) in [
            (0, counts.issued, "#0b5cad", t.codes_issued),
            (BAR, counts.used, "#1a7f37", t.codes_used),
        ] {
            let height = visible(count) * HEIGHT / top;
            svg.push_str(&format!(
                "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{height}\" fill=\"{fill}\">\
                 <title>{} {name}: {}</title></rect>",
                x + offset,
                HEIGHT - height,
                BAR - 1,
                day_text(*day),
                shown(count, min).replace('<', "&lt;")
            ));
        }
    }
    svg.push_str(&format!(
        "<line x1=\"0\" y1=\"{HEIGHT}\" x2=\"{width}\" y2=\"{HEIGHT}\" stroke=\"#57606a\"/></svg>"
    ));
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_wait_is_the_middle_one_and_shown_only_from_the_minimum() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [300]), Some(300));
        assert_eq!(median(&mut [900, 60, 300]), Some(300));
        assert_eq!(median(&mut [600, 60, 300, 1200]), Some(300));
        let day = |used, minutes| DayCounts {
            used,
            median_minutes_to_upload: minutes,
            ..DayCounts::default()
        };
        assert_eq!(shown_median(&day(12, Some(95)), 10), "95");
        assert_eq!(shown_median(&day(9, Some(95)), 10), "");
        assert_eq!(shown_median(&day(0, None), 1), "");
    }

    #[test]
    fn counts_below_the_minimum_are_not_told() {
        assert_eq!(shown(0, 10), "< 10");
        assert_eq!(shown(9, 10), "< 10");
        assert_eq!(shown(10, 10), "10");
        assert_eq!(shown(3, 1), "3");
    }

    #[test]
    fn the_chart_scales_bars_to_the_largest_shown_count() {
        let mut days = BTreeMap::new();
        days.insert(
            20_463,
            DayCounts {
                issued: 20,
                used: 5,
                ..DayCounts::default()
            },
        );
        days.insert(
            20_464,
            DayCounts {
                issued: 10,
                used: 10,
                ..DayCounts::default()
            },
        );
        let svg = chart_svg(&days, 10, &super::super::i18n::EN);
        // 20 is the top: 160 high; 10 is 80; 5 is below the minimum: no bar.
        assert!(svg.contains("height=\"160\" fill=\"#0b5cad\""), "{svg}");
        assert!(
            svg.contains("y=\"160\" width=\"7\" height=\"0\" fill=\"#1a7f37\""),
            "{svg}"
        );
        assert_eq!(svg.matches("height=\"80\"").count(), 2, "{svg}");
        assert!(svg.contains("2026-01-10 Codes used: &lt; 10"), "{svg}");
        assert!(!svg.contains("<script"));
    }
}
