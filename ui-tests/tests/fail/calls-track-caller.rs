#[manhole::inspect(calls)]
#[track_caller]
fn checked(x: Option<u32>) -> u32 {
    x.expect("a value")
}

fn main() {
    let _ = checked(Some(1));
}
