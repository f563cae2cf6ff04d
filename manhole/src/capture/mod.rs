//! Every thread's stack, taken without disturbing it: the stack signal's
//! handler and its slots, the quiet capture of threads asleep in a system
//! call, the profiler's ring of raw samples (filled by the same handler),
//! unwinding, and symbols.
//!
//! **Layer:** above `os/` and `instrument/` (a thread's stack names the
//! instrumented future it polls); below everything that answers.
//!
//! **Architecture invariant:** the handler side (`dump::on_signal`,
//! `samples::record`) allocates nothing, takes no lock, cannot panic and
//! saves `errno`. Unwinding and symbols run outside any handler, under the
//! dump's turn, so a forked child never inherits a half-held unwinder.

mod debug_info;
mod dump;
mod outcome;
mod quiet;
pub(crate) mod samples;
pub(crate) mod stacks;
pub(crate) mod symbols;
pub(crate) mod unwind;

pub(crate) use dump::{capture, in_handler, on_signal, turn, turn_unless, Described, STACK_COPY};
pub(crate) use outcome::{Capture, Outcome};
pub(crate) use quiet::{capture_quietly, known_tails, learn_tail, retakes, set_after_copy};
