struct Report {
    lines: usize,
}

#[manhole::command]
fn report() -> Report {
    Report { lines: 1 }
}

fn main() {}
