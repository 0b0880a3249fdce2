//! The crate's one `unsafe` call: a software prefetch hint, which asks the CPU to bring a cache
//! line closer without waiting for it. Lookups scheduled for the cache (`ordered.rs`) request
//! the fingerprints of a lookup a few places ahead with it.
//!
//! The hint cannot change what a program computes: it reads nothing the program sees, never
//! faults, and is dropped by the CPU when it is busy. Only its timing shows.

/// Hints the CPU to load the cache line of `slice[index]` into every cache level; does nothing
/// when `index` is out of bounds or the target has no prefetch instruction.
#[inline(always)]
pub(super) fn prefetch<T>(slice: &[T], index: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(element) = slice.get(index) {
        let address = std::ptr::from_ref(element).cast::<i8>();
        // SAFETY: `_mm_prefetch` requires SSE, which every x86_64 CPU has (the x86_64 targets
        // enable it in their baseline); the instruction is a hint that reads nothing visible to
        // the program and cannot fault, and `address` comes from a live reference into `slice`
        // all the same.
        #[allow(unsafe_code)]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_index_leaves_the_data_and_the_program_alone() {
        let data: Vec<u16> = (0..10_000u16).collect();
        for index in (0..data.len()).chain([data.len(), usize::MAX]) {
            prefetch(&data, index);
        }
        prefetch::<u64>(&[], 0);
        assert!(data.iter().enumerate().all(|(index, &value)| value == index as u16));
    }
}
