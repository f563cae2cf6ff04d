#[manhole::command]
async fn refresh() -> u32 {
    1
}

fn main() {}
