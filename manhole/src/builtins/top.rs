//! `top`: how much CPU each thread used over an interval.
//!
//! Two readings of every thread's CPU-time clock (one `clock_gettime`
//! each), the interval apart; the difference over the wall-clock time
//! between them is the thread's share of one core. Names and states come
//! from one read of each thread's `/proc/self/task/TID/stat` at the end.
//! The session that asked sleeps in between, holding nothing: no lock, no
//! dump turn, so every other session and every application thread runs on.

use super::answer::Answer;
use crate::os::procfs::{thread_cpu_ns, Tasks};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One thread's CPU use over the interval.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ThreadCpu {
    pub(crate) tid: i32,
    pub(crate) name: String,
    /// Its state at the end of the interval.
    pub(crate) state: &'static str,
    /// 100 is one core, busy for the whole interval.
    pub(crate) cpu_percent: f64,
}

/// Each thread's name and state at the end of the last `top`: a thread
/// that has not run since cannot have changed either, so `top` does not
/// read its `stat` again (one `/proc` read a thread is most of what a
/// `top` of a thousand idle threads costs).
static DESCRIBED: Mutex<BTreeMap<i32, (String, &'static str)>> = Mutex::new(BTreeMap::new());

/// Every thread's CPU time so far, in nanoseconds.
fn cpu_ns(tids: &[i32]) -> HashMap<i32, u64> {
    tids.iter()
        .filter_map(|&tid| Some((tid, thread_cpu_ns(tid)?)))
        .collect()
}

/// Measures every thread over `interval`, hottest first (ties by tid). A
/// thread that started during the interval counts from its start; one that
/// ended is left out.
pub(crate) fn sample(interval: Duration) -> Vec<ThreadCpu> {
    let Some(tasks) = Tasks::open() else {
        return Vec::new();
    };
    let before = cpu_ns(&tasks.tids());
    let started = Instant::now();
    std::thread::sleep(interval);
    let elapsed = started.elapsed().as_secs_f64();
    let mut described = DESCRIBED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut threads: Vec<ThreadCpu> = tasks
        .tids()
        .into_iter()
        .filter_map(|tid| {
            let now = thread_cpu_ns(tid)?;
            let used = now.saturating_sub(before.get(&tid).copied().unwrap_or(0));
            // A thread that did not run kept the name and state it had:
            // changing either takes running (but for one woken and still
            // waiting for a CPU, shown asleep until it runs). Its `stat` is
            // read again only when it ran, or is new.
            let known = described
                .get(&tid)
                .filter(|_| used == 0 && before.contains_key(&tid));
            let (name, state) = match known {
                Some((name, state)) => (name.clone(), *state),
                None => {
                    let stat = tasks.stat(tid)?;
                    (stat.name, stat.state)
                }
            };
            let percent = used as f64 / 1e9 / elapsed * 100.0;
            Some(ThreadCpu {
                tid,
                name,
                state,
                cpu_percent: (percent * 10.0).round() / 10.0,
            })
        })
        .collect();
    *described = threads
        .iter()
        .map(|thread| (thread.tid, (thread.name.clone(), thread.state)))
        .collect();
    drop(described);
    threads.sort_by(|a, b| {
        b.cpu_percent
            .total_cmp(&a.cpu_percent)
            .then(a.tid.cmp(&b.tid))
    });
    threads
}

/// The threads as `top -H` lists them: a summary line, then a table.
pub(crate) fn render(interval: Duration, threads: &[ThreadCpu]) -> String {
    use std::fmt::Write as _;
    let total: f64 = threads.iter().map(|thread| thread.cpu_percent).sum();
    let running = threads
        .iter()
        .filter(|thread| thread.state == "running")
        .count();
    let mut text = format!(
        "Threads: {} total, {running} running; {total:.1}% CPU over {:.1}s (100% is one core)\n",
        threads.len(),
        interval.as_secs_f64()
    );
    let name_width = threads
        .iter()
        .map(|thread| thread.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        text,
        "{:>7}  {:<12}  {:>5}  {:<name_width$}",
        "TID", "S", "%CPU", "COMMAND"
    );
    for thread in threads {
        let line = format!(
            "{:>7}  {:<12}  {:>5.1}  {:<name_width$}",
            thread.tid, thread.state, thread.cpu_percent, thread.name
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// `top`: samples for `interval`, then answers each thread's share.
pub(super) fn answer(interval: Duration) -> Answer {
    let threads = sample(interval);
    Answer {
        json: json!({
            "seconds": interval.as_secs_f64(),
            "threads": threads.iter().map(|t| json!({
                "tid": t.tid,
                "name": t.name,
                "state": t.state,
                "cpu_percent": t.cpu_percent,
            })).collect::<Vec<_>>(),
        }),
        text: render(interval, &threads),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_spinning_thread_is_hot_and_a_sleeping_one_cold() {
        let stop = Arc::new(AtomicBool::new(false));
        let spin = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("top-spin".to_owned())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .unwrap()
        };
        let nap = std::thread::Builder::new()
            .name("top-nap".to_owned())
            .spawn(|| std::thread::sleep(Duration::from_secs(2)))
            .unwrap();
        let threads = sample(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        spin.join().unwrap();
        nap.join().unwrap();
        let find = |name: &str| threads.iter().find(|t| t.name == name).unwrap();
        assert!(find("top-spin").cpu_percent > 30.0, "{threads:?}");
        assert!(find("top-nap").cpu_percent < 5.0, "{threads:?}");
        assert!(threads
            .windows(2)
            .all(|pair| pair[0].cpu_percent >= pair[1].cpu_percent));
        let text = render(Duration::from_millis(500), &threads);
        assert!(text.lines().nth(1).unwrap().contains("%CPU"), "{text}");
    }
}
