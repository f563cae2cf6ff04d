//! Every form `inspect(calls)` and `inspect(writable)` accept.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize};
use std::sync::{Mutex, RwLock};

#[derive(Serialize, Deserialize)]
struct Limits {
    burst: u32,
}

#[manhole::inspect(writable)]
static ENABLED: AtomicBool = AtomicBool::new(true);

#[manhole::inspect(writable, name = "offset")]
static OFFSET: AtomicI64 = AtomicI64::new(0);

#[manhole::inspect(writable)]
static WORKERS: AtomicUsize = AtomicUsize::new(4);

#[manhole::inspect(writable)]
static LIMITS: Mutex<Limits> = Mutex::new(Limits { burst: 1 });

#[manhole::inspect(writable)]
static HOSTS: RwLock<Vec<String>> = RwLock::new(Vec::new());

#[manhole::inspect(calls)]
fn plain(x: u32) -> u32 {
    x + 1
}

#[manhole::inspect(calls)]
fn no_return(_x: u32) {}

#[manhole::inspect(calls)]
fn early_return_and_question_mark(text: &str) -> Result<u32, std::num::ParseIntError> {
    if text.is_empty() {
        return Ok(0);
    }
    let value: u32 = text.parse()?;
    Ok(value)
}

#[manhole::inspect(calls)]
fn generic<T: Clone>(value: &T) -> T {
    value.clone()
}

#[manhole::inspect(calls)]
fn opaque(values: &[u32]) -> impl Iterator<Item = &u32> + '_ {
    values.iter().filter(|value| **value > 1)
}

#[manhole::inspect(calls)]
fn mutable_params(mut count: u32, (a, b): (u32, u32)) -> u32 {
    count += a + b;
    count
}

#[manhole::inspect(calls)]
async fn later(x: u32) -> Result<u32, String> {
    let y: u32 = x.checked_add(1).ok_or("overflow")?;
    Ok(y)
}

/// Arguments shown in `tasks`: any `Debug` parameter, by value or by
/// reference, `mut` or a pattern (left out).
#[manhole::inspect(calls, args)]
async fn with_args(id: u64, user: &str, mut tags: Vec<String>, (a, _b): (u8, u8)) -> usize {
    tags.push(format!("{id}{user}{a}"));
    tags.len()
}

struct Handler;

impl Handler {
    #[manhole::inspect(calls, args)]
    async fn handle(&self, r#type: u8) -> u8 {
        r#type
    }
}

#[manhole::inspect(calls)]
unsafe fn raw_read(pointer: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *pointer }
}

struct Store {
    items: Vec<String>,
}

impl Store {
    #[manhole::inspect(calls)]
    fn first_mut(&mut self) -> Option<&mut String> {
        self.items.first_mut()
    }

    #[manhole::inspect(calls, name = "store_len")]
    fn len(&self) -> usize {
        self.items.len()
    }

    #[manhole::inspect(calls)]
    fn new() -> Self {
        Store { items: Vec::new() }
    }

    #[manhole::inspect(calls)]
    fn into_items(self) -> Vec<String> {
        self.items
    }
}

#[manhole::inspect(calls)]
fn nested_opaque(text: &str) -> Result<impl Iterator<Item = u32> + '_, std::num::ParseIntError> {
    let first: u32 = text.split(',').next().unwrap_or("0").parse()?;
    Ok(text.split(',').map(move |_| first))
}

#[manhole::inspect(calls)]
fn never_returns(message: &str) -> ! {
    panic!("{message}")
}

/// Records the order in which it is dropped.
struct Noisy(&'static str);

static DROPPED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

impl Drop for Noisy {
    fn drop(&mut self) {
        DROPPED.lock().unwrap().push(self.0);
    }
}

#[manhole::inspect(calls)]
fn drops_in_order(first: Noisy, _second: Noisy, third: Noisy) {
    let _local = Noisy("local");
    let _ = (&first, &third);
}

trait Greeter {
    fn greet(&self) -> String;
}

impl Greeter for Store {
    #[manhole::inspect(calls)]
    fn greet(&self) -> String {
        format!("{} items", self.items.len())
    }
}

fn main() {
    let _ = plain(1);
    no_return(1);
    let _ = early_return_and_question_mark("4");
    let _ = generic(&String::new());
    let _ = opaque(&[1, 2]).count();
    let _ = mutable_params(1, (2, 3));
    let _ = later(1);
    let _ = with_args(7, "ann", Vec::new(), (1, 2));
    let _ = Handler.handle(3);
    let value = 5;
    // SAFETY: `value` is a live u32.
    let _ = unsafe { raw_read(&value) };
    let mut store = Store::new();
    let _ = store.first_mut();
    let _ = store.len();
    let _ = store.greet();
    let _ = store.into_items();
    assert_eq!(nested_opaque("4,5").map(Iterator::sum::<u32>), Ok(8));
    assert!(std::panic::catch_unwind(|| never_returns("gone")).is_err());
    drops_in_order(Noisy("first"), Noisy("second"), Noisy("third"));
    // As without the attribute: locals, then parameters in reverse order.
    assert_eq!(
        *DROPPED.lock().unwrap(),
        ["local", "third", "second", "first"]
    );
}
