//! `profile`: the sampler that drives the stack signal's profile ticks
//! (CPU timers, or wall-clock looks), and the formats a finished profile is
//! written in (folded, top, SVG, pprof).
//!
//! **Layer:** above `capture/`, whose handler fills the ring and whose
//! unwinder and symbols it uses; below `builtins/`.
//!
//! **Architecture invariant:** one profile at a time, and nothing of it
//! outlives its request: a client that leaves, or `uninstall`, ends it and
//! deletes every timer.

pub(crate) mod formats;
pub(crate) mod pprof;
pub(crate) mod sampler;
