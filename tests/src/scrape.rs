//! The server's metrics as a scraper sees them. A test installs the server's Prometheus
//! recorder ([`install`]) before it starts a server, which records into it from then on; the
//! recorder is global to the process, so a test that reads a gauge runs one server at a time
//! (nextest gives each test its own process). [`Scrape`] reads the Prometheus text format back.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;

/// Installs the recorder once per process; what the process records before is lost.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| exposure_server::metrics::install().expect("install the recorder"))
}

/// Returns what `/metrics` would answer now.
pub fn render() -> String {
    install().render()
}

/// Scrapes until `done` accepts the scrape; panics with the last scrape after 20 s.
pub async fn until(what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = Scrape::parse(&render());
        if done(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One sample: a series name and its labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// A parsed scrape in the Prometheus text format (version 0.0.4).
#[derive(Clone, Debug)]
pub struct Scrape {
    /// The text as served.
    pub text: String,
    samples: Vec<(Series, f64)>,
    /// Metric family names and types, from the `# TYPE` lines.
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses `text`; panics on a line that is not in the format.
    pub fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines().map(str::trim).filter(|line| !line.is_empty()) {
            if let Some(declaration) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            samples.push((parse_series(series), value));
        }
        Self {
            text: text.to_owned(),
            samples,
            types,
        }
    }

    /// Returns the value of the sample `name` whose labels include every pair of `labels`,
    /// summed when several match; `None` when none does.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self
            .samples
            .iter()
            .filter(|(series, _)| {
                series.name == name
                    && labels.iter().all(|(label, value)| {
                        series.labels.get(*label).map(String::as_str) == Some(*value)
                    })
            })
            .map(|(_, value)| *value)
            .peekable();
        matching.peek()?;
        Some(matching.sum())
    }

    /// Returns every series whose value differs in `later` (or that appears there), written
    /// `name{label="value",...}`, with how much it moved.
    pub fn moved_in(&self, later: &Scrape) -> BTreeMap<String, f64> {
        let earlier: BTreeMap<&Series, f64> = self
            .samples
            .iter()
            .map(|(series, value)| (series, *value))
            .collect();
        later
            .samples
            .iter()
            .filter_map(|(series, value)| {
                let delta = value - earlier.get(series).copied().unwrap_or(0.0);
                (delta != 0.0 || !earlier.contains_key(series)).then(|| (series.to_string(), delta))
            })
            .collect()
    }

    /// Returns the metric families of the scrape and their types (`counter`, `gauge`,
    /// `histogram`, ...).
    pub fn families(&self) -> &BTreeMap<String, String> {
        &self.types
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(label, value)| format!("{label}={value:?}"))
            .collect();
        write!(f, "{}{{{}}}", self.name, labels.join(","))
    }
}

/// Parses `name{label="value",...}`.
fn parse_series(series: &str) -> Series {
    let Some((name, rest)) = series.split_once('{') else {
        return Series {
            name: series.to_owned(),
            labels: BTreeMap::new(),
        };
    };
    let body = rest.strip_suffix('}').expect("closing brace");
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "quoted label value in {series}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().expect("escaped character")),
                '"' => break,
                other => value.push(other),
            }
        }
        labels.insert(label.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Series {
        name: name.to_owned(),
        labels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_labels_and_types() {
        let scrape = Scrape::parse(
            "# HELP a_total help text\n# TYPE a_total counter\na_total{kind=\"x\",q=\"a\\\"b,c\"} 3\n\
             a_total{kind=\"y\"} 4\n# TYPE g gauge\ng 1.5\n",
        );
        assert_eq!(scrape.value("a_total", &[("kind", "x")]), Some(3.0));
        assert_eq!(scrape.value("a_total", &[("q", "a\"b,c")]), Some(3.0));
        assert_eq!(scrape.value("a_total", &[]), Some(7.0));
        assert_eq!(scrape.value("a_total", &[("kind", "z")]), None);
        assert_eq!(scrape.value("g", &[]), Some(1.5));
        assert_eq!(
            scrape.families().get("g").map(String::as_str),
            Some("gauge")
        );
    }
}
