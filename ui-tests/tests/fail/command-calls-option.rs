#[manhole::command(calls)]
fn reload() {}

fn main() {
    reload();
}
