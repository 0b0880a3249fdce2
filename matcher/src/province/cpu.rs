//! CPU time of the whole process, for CPU seconds per lookup next to wall time: on a machine
//! shared with other work, wall time counts the others' turns and CPU time does not.
//!
//! Hardware counters (cycles, cache misses) need `perf_event_open` and a PMU the kernel exposes;
//! the virtual machine this benchmark was written on has none, so the report gives CPU time
//! instead.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, 100 on every Linux ABI.
const USER_HZ: u64 = 100;

/// Returns the user and system CPU time of every thread of this process so far, from
/// `/proc/self/stat` (10 ms resolution), or `None` where that file cannot be read.
pub(super) fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name, field 2, is parenthesised and may hold spaces: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    let ticks = user + system;
    Some(Duration::from_millis(ticks * 1_000 / USER_HZ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows_with_work() {
        let Some(before) = process_cpu_time() else {
            return;
        };
        let started = std::time::Instant::now();
        let mut value = 1u64;
        while started.elapsed() < Duration::from_millis(300) {
            value = value
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
        }
        std::hint::black_box(value);
        let spent = process_cpu_time()
            .unwrap_or_default()
            .saturating_sub(before);
        assert!(spent >= Duration::from_millis(50), "{spent:?}");
    }
}
