#[manhole::main]
fn run() {}

fn main() {
    run();
}
