// `#[tokio::main]` above `#[manhole::main]` would install the manhole
// before the runtime exists.

#[tokio::main]
#[manhole::main]
async fn main() {}
