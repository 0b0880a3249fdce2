//! The process-level facts the server needs from the C library: its file-creation mask, its
//! effective user id, its limit of open file descriptors (which sizes the connection caps of
//! [`crate::transport::connections`]) and a thread's priority. No call touches memory other
//! than what it is given.

/// Sets the process's file-creation mask to `077`, so every file and folder the server (and
/// RocksDB, which creates its files with the process mask) makes is private to its owner,
/// whatever mask the server was started with.
#[allow(unsafe_code)]
pub fn restrict_umask() {
    // SAFETY: umask(2) only swaps the calling process's mask; it has no preconditions and
    // cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Returns the effective user id of this process.
#[allow(unsafe_code)]
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) has no preconditions, cannot fail and only returns a number.
    unsafe { libc::geteuid() }
}

/// Returns the process's soft limit of open file descriptors (`RLIMIT_NOFILE`), which every
/// socket, RocksDB file and log file counts against; `None` when it is unlimited or unreadable.
#[allow(unsafe_code)]
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into the memory we own and pass.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Raises the soft limit of open file descriptors to the hard limit, as Go's runtime and most
/// servers do at start: the common default soft limit of 1,024 would leave too few descriptors
/// for both the connections and RocksDB. A failure leaves the limit as it was.
#[allow(unsafe_code)]
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one `rlimit` into the memory we own and pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return;
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit(2) reads one `rlimit` we own; raising the soft limit up to the hard
    // limit needs no privilege and touches nothing else.
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
    }
}

/// Sets the calling thread's nice value to `nice` (on Linux, priorities are per thread, and
/// threads it starts inherit it); elsewhere does nothing.
#[allow(unsafe_code)]
pub fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid(2) and setpriority(2) take and return plain integers and touch no
        // memory.
        let result =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
    Ok(())
}
