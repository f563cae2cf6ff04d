#[manhole::command]
struct Settings {
    level: u8,
}

fn main() {}
