#[manhole::command]
fn largest<T: PartialOrd>(a: T, b: T) -> bool {
    a > b
}

fn main() {}
