//! The known CPU split that `examples/profiled.rs` and the profiler bench
//! (`benches/profiler-peers`) both run: `seventy` and `thirty` do the same
//! unit of work 7 and 3 times a call.

/// The unit of work both halves do.
#[inline(never)]
pub fn crunch(seed: u64) -> u64 {
    let mut value = seed;
    for _ in 0..20_000 {
        value = std::hint::black_box(
            value
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1),
        );
    }
    value
}

// Each half keeps its frame through its last call: without `black_box`,
// an optimised build ends it with a jump to `crunch` (a tail call), and the
// samples of that call would show no `seventy` or `thirty` at all.
#[inline(never)]
pub fn seventy(seed: u64) -> u64 {
    std::hint::black_box((0..7).fold(seed, |value, _| crunch(value)))
}

#[inline(never)]
pub fn thirty(seed: u64) -> u64 {
    std::hint::black_box((0..3).fold(seed, |value, _| crunch(value)))
}
