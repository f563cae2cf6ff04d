#[manhole::command(name = reload)]
fn reload_config() {}

fn main() {}
