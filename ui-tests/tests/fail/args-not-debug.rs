struct Secret(u64);

#[manhole::inspect(calls, args)]
async fn handle(id: u64, secret: Secret) -> u64 {
    id + secret.0
}

fn main() {
    let _ = handle(1, Secret(2));
}
