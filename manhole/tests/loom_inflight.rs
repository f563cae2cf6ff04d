//! The in-flight table's lock-free protocol, model-checked with `loom`:
//! the very source of `instrument/inflight/slot.rs`, compiled here on
//! loom's atomics and mutex, explored over every interleaving loom allows
//! within `LOOM_MAX_PREEMPTIONS` preemptions (2 unless it is set; about ten
//! seconds in a debug build). A reader runs on a thread of its own, so that
//! loom interleaves its reads with the writes.
//!
//! Checked:
//! - two threads claiming, starting, ending and releasing calls while a
//!   third scans the table: every call the reader sees is one call's
//!   fields, never two calls' mixed, and no slot is ever held by two calls;
//! - a slot reused while a reader reads it: the reader sees the first
//!   call, the second, or nothing;
//! - the pool refilling one thread's free list while another thread gives
//!   its slots back: no slot is handed out twice, and none is lost.
//!
//! What loom cannot model: a signal handler (the crash report) reading
//! the table on the very thread that is writing it, stopped at any
//! instruction. `instrument::inflight`'s unit test
//! `a_reader_never_sees_two_calls_mixed` covers it with ten million starts
//! and ends on two threads and a reader spinning.

#![allow(dead_code)]

mod sync {
    pub(crate) use loom::sync::atomic::{
        fence, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(crate) use loom::sync::{Mutex, MutexGuard};
}

#[path = "../src/instrument/inflight/slot.rs"]
mod slot;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use slot::{LocalSlots, Pool, Slot, Started};

/// Names of the calls, one per writer: a call's every field says which.
const NAMES: [&str; 3] = ["call_zero", "call_one", "call_two"];

fn new_slot() -> Slot {
    Slot {
        generation: sync::AtomicU64::new(0),
        name_start: sync::AtomicPtr::new(std::ptr::null_mut()),
        name_len: sync::AtomicUsize::new(0),
        first_poll_ns: sync::AtomicU64::new(0),
        poll_started_ns: sync::AtomicU64::new(0),
        thread: sync::AtomicI32::new(0),
        parent: sync::AtomicUsize::new(0),
        args_len: sync::AtomicUsize::new(0),
        args: std::array::from_fn(|_| sync::AtomicU64::new(0)),
    }
}

/// Call `which`: its name, time and parent all say `which`. Its arguments
/// are left out: their twelve words are written and read exactly as the
/// other fields are (relaxed, between the fences), and would multiply the
/// interleavings to explore for nothing new.
fn call(which: usize) -> Started {
    Started {
        name: NAMES[which],
        first_poll_ns: 1000 + which as u64,
        parent: 7 + which,
        args: None,
    }
}

/// Panics unless `seen` is exactly one of the calls.
fn check_whole(seen: &Started) {
    let which = NAMES
        .iter()
        .position(|name| *name == seen.name)
        .unwrap_or_else(|| panic!("a torn name: {:?}", seen.name));
    assert_eq!(*seen, call(which), "fields of two calls mixed");
}

struct Table {
    slots: Vec<Slot>,
    /// Whether each slot is held by a call: claiming a held one is a bug.
    held: Vec<AtomicBool>,
    pool: Pool,
}

impl Table {
    fn new(slots: usize) -> Table {
        Table {
            slots: (0..slots).map(|_| new_slot()).collect(),
            held: (0..slots).map(|_| AtomicBool::new(false)).collect(),
            pool: sync::Mutex::new((0..slots as u32).collect()),
        }
    }

    /// Claims a slot, shows call `which` in it, ends it and gives it back,
    /// as an instrumented future's first poll and drop do.
    fn run_call<const N: usize>(&self, local: &mut LocalSlots<N>, which: usize) {
        let Some(index) = local.take(&self.pool, &mut |_| None) else {
            return;
        };
        let held = &self.held[index as usize];
        assert!(
            !held.swap(true, Ordering::AcqRel),
            "slot {index} claimed twice"
        );
        let slot = &self.slots[index as usize];
        let generation = slot.begin(&call(which));
        slot.end(generation);
        held.store(false, Ordering::Release);
        local.give(index, &self.pool);
    }

    fn scan(&self) {
        for slot in &self.slots {
            if let Some(seen) = slot.read(false) {
                assert_eq!(seen.generation % 2, 1);
                check_whole(&seen.started);
            }
        }
    }
}

fn model(test: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(2);
    }
    builder.check(test);
}

/// How many interleavings each model explored, printed for the record.
fn explored(name: &str, runs: &std::sync::atomic::AtomicUsize) {
    println!(
        "{name}: {} interleavings",
        runs.load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[test]
fn a_slot_reused_while_a_reader_reads_it() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(|| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = Arc::new(Table::new(1));
        let reader = {
            let table = table.clone();
            loom::thread::spawn(move || table.scan())
        };
        let slot = &table.slots[0];
        let first = slot.begin(&call(0));
        slot.end(first);
        let second = slot.begin(&call(1));
        slot.end(second);
        reader.join().unwrap();
        assert_eq!(slot.generation.load(Ordering::Acquire), 4);
    });
    explored("a slot reused", &RUNS);
}

#[test]
fn two_threads_claim_and_release_while_a_third_scans() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(|| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = Arc::new(Table::new(2));
        let reader = {
            let table = table.clone();
            loom::thread::spawn(move || table.scan())
        };
        let other = {
            let table = table.clone();
            loom::thread::spawn(move || {
                let mut local = LocalSlots::<1>::EMPTY;
                table.run_call(&mut local, 1);
                local.give_all(&table.pool);
            })
        };
        let mut local = LocalSlots::<1>::EMPTY;
        table.run_call(&mut local, 0);
        local.give_all(&table.pool);
        other.join().unwrap();
        reader.join().unwrap();
        let mut pool = slot::lock(&table.pool).clone();
        pool.sort_unstable();
        assert_eq!(pool, [0, 1], "a slot was lost or doubled");
    });
    explored("two writers and a reader", &RUNS);
}

/// One thread's free list, full, trades half with the pool as it takes a
/// slot back, while the other refills its empty list from the pool.
#[test]
fn the_pool_refill_races_a_release() {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    model(|| {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let table = Arc::new(Table::new(3));
        let giver = {
            let table = table.clone();
            loom::thread::spawn(move || {
                let mut local = LocalSlots::<2>::EMPTY;
                let (first, second) = {
                    let mut pool = slot::lock(&table.pool);
                    (pool.remove(0), pool.remove(0))
                };
                local.give(first, &table.pool);
                // Full: this one sends half the list to the pool.
                local.give(second, &table.pool);
                local.len
            })
        };
        let taker = {
            let table = table.clone();
            loom::thread::spawn(move || {
                let mut local = LocalSlots::<2>::EMPTY;
                let taken = local.take(&table.pool, &mut |_| None);
                if let Some(index) = taken {
                    let held = &table.held[index as usize];
                    assert!(
                        !held.swap(true, Ordering::AcqRel),
                        "slot {index} handed out twice"
                    );
                }
                (taken, local.len)
            })
        };
        let kept_by_giver = giver.join().unwrap();
        let (taken, kept_by_taker) = taker.join().unwrap();
        let pooled = slot::lock(&table.pool).len();
        assert_eq!(
            pooled + kept_by_giver + kept_by_taker + usize::from(taken.is_some()),
            3,
            "a slot was lost or doubled"
        );
    });
    explored("the pool refill against a release", &RUNS);
}
