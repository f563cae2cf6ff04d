#[manhole::inspect(calls, args)]
fn handle(id: u64) -> u64 {
    id
}

#[manhole::inspect(args)]
async fn without_calls(id: u64) -> u64 {
    id
}

fn main() {
    let _ = handle(1);
    let _ = without_calls(1);
}
