#[manhole::command]
fn resize(width: Option<u32>, height: u32) -> u32 {
    width.unwrap_or(0) * height
}

fn main() {}
