//! The flight recorder: what the process did before anyone connected.
//!
//! Every second, the `manhole` thread (which already wakes then to sample
//! the call counters for `stats --window`) takes a point: the process's
//! CPU time, resident memory, threads and open descriptors, and the value
//! of every inspected static that is a number. The counted functions'
//! calls, errors and latencies come from the counters' own samples
//! ([`crate::instrument::calls::CallStats::figures_between`]). The manhole's own events are kept
//! with their time: who connected (peer uid and pid), and each `set` and
//! `call`, with its arguments and outcome: an audit trail. `history` reads
//! it all back, one value per step.
//!
//! Bounded twice: by `history` (ten minutes by default) and by
//! `history_bytes` (8 MiB), the oldest going first. Normal context, but
//! for [`mirror`]'s reading side, which a crash report runs.
//!
//! - [`reading`]: `history`'s answer, its steps and sparklines.
//! - [`mirror`]: the last minute's numbers in atomics, for crash reports.
//!
//! Not recorded yet (issue 38): a low-rate CPU profile, and a last minute
//! in the watchdog's reports.

mod mirror;
mod reading;
mod record;

pub(crate) use mirror::{last_minute, mirrored_name, LastMinute, MIRRORED_FUNCTIONS, NONE};
pub(crate) use reading::read;
pub(crate) use record::{client_acted, configure, is_on, record, session_opened};
