//! The two process-level facts the server needs from the C library: its file-creation mask and
//! its effective user id. Both calls cannot fail and touch no memory of ours.

/// Sets the process's file-creation mask so every file and folder the server (and RocksDB,
/// which creates its files with the process mask) makes is private to its owner, whatever
/// mask the server was started with. Returns the previous mask.
pub fn restrict_umask() -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: umask(2) only swaps the calling process's mask; it has no preconditions and
    // cannot fail.
    let previous = unsafe { libc::umask(0o077) };
    u32::from(previous)
}

/// Returns the effective user id of this process.
pub fn effective_uid() -> u32 {
    #[allow(unsafe_code)]
    // SAFETY: geteuid(2) has no preconditions, cannot fail and only returns a number.
    let uid = unsafe { libc::geteuid() };
    uid
}
