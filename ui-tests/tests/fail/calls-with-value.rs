#[manhole::inspect(calls = true)]
fn handle(x: u32) -> u32 {
    x
}

fn main() {
    let _ = handle(1);
}
