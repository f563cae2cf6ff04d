//! The exit statuses, a contract with scripts: 0 for an answer, 1 for an
//! error reply, 2 when no answer could be had. Over many processes or
//! hosts the worst of them wins; they are numbered so that the worst is
//! the largest.

/// Every process answered.
pub const SUCCESS: u8 = 0;
/// A server answered with an error (`error: MESSAGE`).
pub const ERROR_REPLY: u8 = 1;
/// No answer could be had: no process, no socket, refused, timed out, a
/// host that ssh could not reach or log in to. Also clap's usage errors.
pub const NO_CONNECTION: u8 = 2;
