// Without the `tokio` feature of `manhole`, an async command does not
// compile, and the error says which feature to turn on.

#[manhole::command]
async fn refresh() -> u32 {
    1
}

fn main() {}
