//! Hands out the tickets of a run: which RPC to send next, when it was due, and whether it counts.
//!
//! Two paces:
//! - **closed loop** (no `--rps`): each worker sends its next request as soon as its previous one
//!   returned; the run measures how fast the server answers `--concurrency` callers.
//! - **fixed rate** (`--rps`, and always for `province`): request *i* of an RPC stream is due at
//!   `start + i / rate`, whatever happened before. Recording latency from that due time rather
//!   than from the moment a busy worker finally sent it is the coordinated-omission correction
//!   (Gil Tene; wrk2): a server stall shows up in every request it delayed, not only in the one
//!   that was in flight.
//!
//! Every run is bounded twice: by tickets (`--warmup` + `--requests`) and by time (`--duration`,
//! warmup included). The schedule stops handing out tickets at whichever comes first.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scenario::RpcKind;

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Pace {
    /// As fast as the workers go, all sending `kind`.
    ClosedLoop {
        /// The one RPC of the run.
        kind: RpcKind,
    },
    /// One fixed-rate stream per RPC, each starting at the run's start.
    FixedRate {
        /// Requests per second of each RPC; non-positive rates are dropped.
        streams: Vec<(RpcKind, f64)>,
    },
}

impl Pace {
    /// Returns the total requests per second of a fixed-rate pace, `None` for a closed loop.
    pub fn total_rate(&self) -> Option<f64> {
        match self {
            Pace::ClosedLoop { .. } => None,
            Pace::FixedRate { streams } => Some(streams.iter().map(|(_, rate)| rate).sum()),
        }
    }
}

/// The bounds of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Requests sent first and left out of the statistics.
    pub warmup: u64,
    /// Requests measured after the warmup, at most.
    pub requests: u64,
    /// Wall time of the whole run, warmup included, at most.
    pub duration: Duration,
}

/// One request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Position in the run, from 0.
    pub index: u64,
    /// The RPC to send.
    pub kind: RpcKind,
    /// When it is due at a fixed rate; `None` in a closed loop (due when taken).
    pub due: Option<Instant>,
    /// False for warmup requests, which are left out of the statistics.
    pub measured: bool,
}

/// The ticket dispenser shared by all workers of a run.
#[derive(Debug)]
pub struct Schedule {
    started: Instant,
    deadline: Instant,
    bounds: Bounds,
    pace: Pace,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    issued: u64,
    /// Requests already issued per fixed-rate stream.
    issued_per_stream: Vec<u64>,
}

impl Schedule {
    /// Starts a schedule at `started`.
    pub fn new(pace: Pace, bounds: Bounds, started: Instant) -> Self {
        let pace = match pace {
            Pace::FixedRate { streams } => Pace::FixedRate {
                streams: streams
                    .into_iter()
                    .filter(|(_, rate)| rate.is_finite() && *rate > 0.0)
                    .collect(),
            },
            closed => closed,
        };
        let streams = match &pace {
            Pace::FixedRate { streams } => streams.len(),
            Pace::ClosedLoop { .. } => 0,
        };
        Schedule {
            started,
            deadline: started + bounds.duration,
            bounds,
            pace,
            state: Mutex::new(State {
                issued: 0,
                issued_per_stream: vec![0; streams],
            }),
        }
    }

    /// Returns the moment the run started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Returns the moment after which no ticket is handed out.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Returns the next ticket, or `None` once the run is over (count or time spent). `now` is
    /// the caller's clock, so that closed-loop runs stop at the deadline.
    pub fn next(&self, now: Instant) -> Option<Ticket> {
        let mut state = self.state.lock().ok()?;
        if state.issued >= self.bounds.warmup.saturating_add(self.bounds.requests) {
            return None;
        }
        let (kind, due) = match &self.pace {
            Pace::ClosedLoop { kind } => {
                if now >= self.deadline {
                    return None;
                }
                (*kind, None)
            }
            Pace::FixedRate { streams } => {
                // The stream whose next request is due soonest; ties go to the earlier stream.
                let (stream, offset) = streams
                    .iter()
                    .zip(&state.issued_per_stream)
                    .map(|((_, rate), issued)| *issued as f64 / rate)
                    .enumerate()
                    .min_by(|left, right| left.1.total_cmp(&right.1))?;
                let due = self.started + Duration::from_secs_f64(offset);
                if due >= self.deadline {
                    return None;
                }
                state.issued_per_stream[stream] += 1;
                (streams[stream].0, Some(due))
            }
        };
        let index = state.issued;
        state.issued += 1;
        Some(Ticket {
            index,
            kind,
            due,
            measured: index >= self.bounds.warmup,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(warmup: u64, requests: u64, seconds: u64) -> Bounds {
        Bounds {
            warmup,
            requests,
            duration: Duration::from_secs(seconds),
        }
    }

    #[test]
    fn closed_loop_stops_at_the_request_count_and_marks_warmup() {
        let start = Instant::now();
        let schedule = Schedule::new(
            Pace::ClosedLoop {
                kind: RpcKind::HealthCheck,
            },
            bounds(2, 3, 60),
            start,
        );
        let tickets: Vec<_> = std::iter::from_fn(|| schedule.next(start)).collect();
        assert_eq!(tickets.len(), 5);
        assert_eq!(tickets.iter().filter(|ticket| ticket.measured).count(), 3);
        assert!(!tickets[1].measured && tickets[2].measured);
        assert!(
            tickets
                .iter()
                .all(|ticket| ticket.due.is_none() && ticket.kind == RpcKind::HealthCheck)
        );
    }

    #[test]
    fn closed_loop_stops_at_the_deadline() {
        let start = Instant::now();
        let schedule = Schedule::new(
            Pace::ClosedLoop {
                kind: RpcKind::ListBatches,
            },
            bounds(0, 1_000, 1),
            start,
        );
        assert!(schedule.next(start).is_some());
        assert!(schedule.next(start + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn fixed_rate_spaces_due_times_evenly_and_stops_at_the_deadline() {
        let start = Instant::now();
        let pace = Pace::FixedRate {
            streams: vec![(RpcKind::ListBatches, 100.0)],
        };
        let schedule = Schedule::new(pace, bounds(0, 1_000_000, 2), start);
        let dues: Vec<Duration> = std::iter::from_fn(|| schedule.next(start))
            .map(|ticket| ticket.due.expect("due") - start)
            .collect();
        assert_eq!(dues.len(), 200, "2 s at 100/s");
        for (index, due) in dues.iter().enumerate() {
            assert!((due.as_secs_f64() - index as f64 / 100.0).abs() < 1e-6);
        }
    }

    #[test]
    fn fixed_rate_streams_interleave_in_proportion() {
        let start = Instant::now();
        let pace = Pace::FixedRate {
            streams: vec![
                (RpcKind::Upload, 1.0),
                (RpcKind::ListBatches, 30.0),
                (RpcKind::GetBatch, 10.0),
                (RpcKind::HealthCheck, 0.0),
            ],
        };
        assert_eq!(pace.total_rate(), Some(41.0));
        let schedule = Schedule::new(pace, bounds(0, 1_000_000, 10), start);
        let tickets: Vec<_> = std::iter::from_fn(|| schedule.next(start)).collect();
        let count = |kind| tickets.iter().filter(|ticket| ticket.kind == kind).count();
        assert_eq!(count(RpcKind::Upload), 10);
        assert_eq!(count(RpcKind::ListBatches), 300);
        assert_eq!(count(RpcKind::GetBatch), 100);
        assert_eq!(
            count(RpcKind::HealthCheck),
            0,
            "zero-rate streams are dropped"
        );
        assert_eq!(
            tickets[0].kind,
            RpcKind::Upload,
            "every stream fires at t = 0"
        );
        assert!(
            tickets.windows(2).all(|pair| pair[0].due <= pair[1].due),
            "due times never go back"
        );
    }
}
