//! What the attributes register and what instrumented code updates: the
//! command table and inspected items, call statistics, the in-flight async
//! and sync calls, heartbeats, and the running of async commands on the
//! program's runtime.
//!
//! **Layer:** above `os/`; imports only the foundations. The fast paths
//! here run on the program's own threads, on every call: lock-free counters
//! and a node inside each future, no allocation.
//!
//! **Architecture invariant:** nothing here captures a stack or talks to a
//! client; the layers above read what this one records.

pub(crate) mod async_commands;
pub(crate) mod calls;
pub(crate) mod clock;
pub(crate) mod heartbeat;
pub(crate) mod inflight;
pub(crate) mod registry;
pub(crate) mod sync_calls;
