//! Hardware counters for `bench-province`: `perf stat` attached to this process for the length
//! of one run, read back as counts per lookup. Where perf is missing, or the machine exposes no
//! counters (a VM without a virtual PMU reports every event `<not supported>`), the report says
//! so instead of giving numbers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The events counted: perf's generic names, which every PMU driver maps to its own.
pub const EVENTS: [&str; 4] = [
    "cycles",
    "instructions",
    "L1-dcache-load-misses",
    "cache-misses",
];

/// What perf counted over one run.
#[derive(Clone, Debug, PartialEq)]
pub enum Counters {
    /// Each event of [`EVENTS`] with its count, `None` where perf could not count it.
    Counts(Vec<(&'static str, Option<u64>)>),
    /// No event could be counted; why.
    Unavailable(String),
}

/// A `perf stat` attached to this process.
pub struct PerfStat {
    child: Child,
}

impl PerfStat {
    /// Attaches `perf stat` to this process (all its threads), or says why it could not.
    pub fn start() -> Result<PerfStat, String> {
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-e", &EVENTS.join(",")])
            .args(["-p", &std::process::id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("perf could not start: {error}"))?;
        // perf counts from when it has attached; give it that moment before the run starts.
        std::thread::sleep(Duration::from_millis(100));
        Ok(PerfStat { child })
    }

    /// Stops counting and returns the counts. perf gets a few seconds to print them after
    /// SIGINT; past that it is killed and the run reported as not counted, so a perf that
    /// ignores the signal cannot hang the benchmark.
    pub fn stop(mut self) -> Counters {
        // SIGINT makes `perf stat` print its counts and exit.
        let interrupted = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        while interrupted && Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return Counters::Unavailable("perf did not stop on SIGINT; killed".to_owned());
        }
        match self.child.wait_with_output() {
            Ok(output) => parse(&String::from_utf8_lossy(&output.stderr)),
            Err(error) => Counters::Unavailable(format!("perf failed: {error}")),
        }
    }
}

/// How long perf may take to print its counts after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads `perf stat -x ,` output: one `value,unit,event,...` line per event, the value a number
/// or `<not supported>` / `<not counted>`.
pub fn parse(output: &str) -> Counters {
    let counts: Vec<(&'static str, Option<u64>)> = EVENTS
        .iter()
        .map(|&event| {
            let value = output
                .lines()
                .map(|line| line.split(',').collect::<Vec<_>>())
                .find(|fields| fields.get(2).is_some_and(|name| name.starts_with(event)))
                .and_then(|fields| fields[0].trim().parse::<u64>().ok());
            (event, value)
        })
        .collect();
    if counts.iter().all(|(_, value)| value.is_none()) {
        let reason = if output.contains("<not supported>") {
            "this machine exposes no hardware counters (perf reports every event <not supported>)"
                .to_owned()
        } else {
            format!(
                "perf counted nothing: {}",
                output.lines().last().unwrap_or("no output").trim()
            )
        };
        return Counters::Unavailable(reason);
    }
    Counters::Counts(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counts_and_unsupported_events() {
        // `perf stat -x ,` output as perf 6.1 prints it on a machine with a PMU, one event not
        // counted.
        let output = "1234567890,,cycles:u,1000000,100.00,,\n\
                      2469135780,,instructions:u,1000000,100.00,2.00,insn per cycle\n\
                      <not counted>,,L1-dcache-load-misses:u,0,0.00,,\n\
                      4242,,cache-misses:u,1000000,100.00,,\n";
        assert_eq!(
            parse(output),
            Counters::Counts(vec![
                ("cycles", Some(1_234_567_890)),
                ("instructions", Some(2_469_135_780)),
                ("L1-dcache-load-misses", None),
                ("cache-misses", Some(4_242)),
            ])
        );
    }

    #[test]
    fn a_machine_without_counters_says_so() {
        // What this project's VM prints.
        let output = "<not supported>,,cycles,0,100.00,,\n\
                      <not supported>,,instructions,0,100.00,,\n\
                      <not supported>,,L1-dcache-load-misses,0,100.00,,\n\
                      <not supported>,,cache-misses,0,100.00,,\n";
        let Counters::Unavailable(reason) = parse(output) else {
            panic!("counts from unsupported events");
        };
        assert!(reason.contains("no hardware counters"), "{reason}");
    }
}
