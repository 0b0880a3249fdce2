//! The one error type of key validation and expansion; every variant names the field at fault,
//! so the server can turn it into a `google.rpc.BadRequest` field violation as is.

/// Why a diagnosis key is structurally invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    /// A GAEN `rolling_period` outside 1..=144.
    #[error("rolling_period must be 1..=144, got {0}")]
    RollingPeriod(u32),
    /// A GAEN key whose last interval number does not fit in 32 bits.
    #[error(
        "rolling_start_interval_number + rolling_period must fit in 32 bits, got {start} + {period}"
    )]
    IntervalOverflow {
        /// The key's `rolling_start_interval_number`.
        start: u32,
        /// The key's `rolling_period`.
        period: u32,
    },
    /// A Bluezone `sub_keys_per_day` that is zero or does not divide 86400.
    #[error("sub_keys_per_day must be nonzero and divide 86400, got {0}")]
    SubKeysPerDay(u32),
    /// A static identifier outside 1..=32 bytes.
    #[error("identifier must be 1..=32 bytes, got {0}")]
    IdentifierLength(usize),
    /// A contagious window whose end is not after its start.
    #[error("contagious_until must be after contagious_from, got from {from} until {until}")]
    EmptyWindow {
        /// The key's `contagious_from`.
        from: u64,
        /// The key's `contagious_until`.
        until: u64,
    },
    /// A Bluezone contagious window that leaves its key's UTC day.
    #[error(
        "contagious window [{from}, {until}) must lie inside day_number {day_number} ([{day_start}, {day_end}))"
    )]
    WindowOutsideDay {
        /// The key's `contagious_from`.
        from: u64,
        /// The key's `contagious_until`.
        until: u64,
        /// The key's `day_number`.
        day_number: u32,
        /// Unix seconds at which the day starts.
        day_start: u64,
        /// Unix seconds at which the day ends (exclusive).
        day_end: u64,
    },
    /// A static contagious window longer than any window the server accepts.
    #[error("contagious window must be at most {max} seconds, got {length}")]
    WindowTooLong {
        /// The window's length in seconds.
        length: u64,
        /// The longest window accepted.
        max: u64,
    },
}
