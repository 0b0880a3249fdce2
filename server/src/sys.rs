//! The two process-level facts the server needs from the C library: its file-creation mask and
//! its effective user id. Both calls cannot fail and touch no memory of ours.

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
