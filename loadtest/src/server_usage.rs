//! The server's resident memory and open file descriptors, sampled during an attack run when
//! `--server-pid` names its process (Linux: `/proc/PID/status` `VmRSS` and the entries of
//! `/proc/PID/fd`, which the same user may read).
//!
//! A [`Sampler`] reads both every [`SAMPLE_EVERY`] until it is finished, and reports the first,
//! highest and last values: the highest is what the attack's bounds are judged on, the last
//! whether the server let go of what the attack made it hold.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often a [`Sampler`] reads the server's figures.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// One reading of the server's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Resident set size, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
}

/// The first, highest and last of one figure over a sampled interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// At the first sample.
    pub start: u64,
    /// The highest sampled.
    pub max: u64,
    /// At the last sample.
    pub end: u64,
}

impl Span {
    fn first(value: u64) -> Self {
        Span {
            start: value,
            max: value,
            end: value,
        }
    }

    fn add(&mut self, value: u64) {
        self.max = self.max.max(value);
        self.end = value;
    }
}

/// What a sampled interval saw of the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerUsage {
    /// The process sampled.
    pub pid: u32,
    /// Readings taken.
    pub samples: u64,
    /// Resident memory, KiB.
    pub rss_kib: Span,
    /// Open file descriptors.
    pub fds: Span,
}

impl ServerUsage {
    fn first(pid: u32, reading: Reading) -> Self {
        ServerUsage {
            pid,
            samples: 1,
            rss_kib: Span::first(reading.rss_kib),
            fds: Span::first(reading.fds),
        }
    }

    fn add(&mut self, reading: Reading) {
        self.samples += 1;
        self.rss_kib.add(reading.rss_kib);
        self.fds.add(reading.fds);
    }
}

/// The server process whose figures a run samples.
#[derive(Debug, Clone)]
pub struct ServerProcess {
    pid: u32,
    proc_dir: PathBuf,
}

impl ServerProcess {
    /// Checks that `pid`'s figures can be read now, and returns the process.
    pub fn open(pid: u32) -> anyhow::Result<Self> {
        let process = ServerProcess {
            pid,
            proc_dir: PathBuf::from(format!("/proc/{pid}")),
        };
        process.read().with_context(|| {
            format!("--server-pid {pid}: cannot read its memory and descriptors (is it running, as this user, on Linux?)")
        })?;
        Ok(process)
    }

    /// Returns the process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Reads the server's resident memory and open descriptors.
    pub fn read(&self) -> anyhow::Result<Reading> {
        let status = std::fs::read_to_string(self.proc_dir.join("status"))
            .with_context(|| format!("cannot read /proc/{}/status", self.pid))?;
        let rss_kib = parse_vm_rss(&status)
            .with_context(|| format!("/proc/{}/status has no VmRSS line", self.pid))?;
        let fds = std::fs::read_dir(self.proc_dir.join("fd"))
            .with_context(|| format!("cannot list /proc/{}/fd", self.pid))?
            .count() as u64;
        Ok(Reading { rss_kib, fds })
    }

    /// Starts sampling every [`SAMPLE_EVERY`] until [`Sampler::finish`].
    pub fn sample(&self) -> Sampler {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let usage = Arc::new(Mutex::new(None::<ServerUsage>));
        let process = self.clone();
        let shared = Arc::clone(&usage);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stopped => break,
                }
                // A process that went away leaves the readings it had.
                let Ok(reading) = process.read() else { break };
                let mut usage = shared
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match usage.as_mut() {
                    Some(usage) => usage.add(reading),
                    None => *usage = Some(ServerUsage::first(process.pid, reading)),
                }
            }
        });
        Sampler {
            process: self.clone(),
            usage,
            stop,
            task,
        }
    }
}

/// Samples under way.
#[derive(Debug)]
pub struct Sampler {
    process: ServerProcess,
    usage: Arc<Mutex<Option<ServerUsage>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Sampler {
    /// Takes one last reading, stops sampling and returns what was seen; `None` when the
    /// process could not be read at all.
    pub async fn finish(self) -> Option<ServerUsage> {
        let _ = self.stop.send(());
        let _ = self.task.await;
        let last = self.process.read().ok();
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match (usage.as_mut(), last) {
            (Some(usage), Some(reading)) => usage.add(reading),
            (None, Some(reading)) => usage = Some(ServerUsage::first(self.process.pid, reading)),
            (_, None) => {}
        }
        usage
    }
}

/// Returns the `VmRSS` value of a `/proc/PID/status` text, in KiB.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut fields = line["VmRSS:".len()..].split_whitespace();
    let value = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status =
            "Name:\texposure-server\nVmPeak:\t  900000 kB\nVmRSS:\t   52344 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(parse_vm_rss(status), Some(52_344));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
        assert_eq!(
            parse_vm_rss("VmRSS:\t12 MB\n"),
            None,
            "only kB is understood"
        );
    }

    #[test]
    fn spans_keep_first_highest_and_last() {
        let mut usage = ServerUsage::first(
            7,
            Reading {
                rss_kib: 100,
                fds: 10,
            },
        );
        usage.add(Reading {
            rss_kib: 300,
            fds: 50,
        });
        usage.add(Reading {
            rss_kib: 200,
            fds: 12,
        });
        assert_eq!(usage.samples, 3);
        assert_eq!(
            usage.rss_kib,
            Span {
                start: 100,
                max: 300,
                end: 200
            }
        );
        assert_eq!(
            usage.fds,
            Span {
                start: 10,
                max: 50,
                end: 12
            }
        );
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn this_process_can_be_sampled() {
        let process = ServerProcess::open(std::process::id()).expect("own /proc entry");
        // Open a few descriptors the count must include.
        let files: Vec<_> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/status").expect("open"))
            .collect();
        let reading = process.read().expect("reading");
        assert!(reading.fds >= 5 + 3, "{reading:?}");
        assert!(reading.rss_kib > 0);
        let sampler = process.sample();
        tokio::time::sleep(SAMPLE_EVERY * 3).await;
        let usage = sampler.finish().await.expect("readings");
        assert!(usage.samples >= 2, "{usage:?}");
        assert!(usage.fds.max >= reading.fds.min(usage.fds.start));
        drop(files);
        assert!(ServerProcess::open(u32::MAX).is_err(), "no such process");
    }
}
