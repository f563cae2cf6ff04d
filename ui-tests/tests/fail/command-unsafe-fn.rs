#[manhole::command]
unsafe fn poke() -> u32 {
    1
}

fn main() {}
