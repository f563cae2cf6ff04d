#[manhole::main]
struct App;

fn main() {}
