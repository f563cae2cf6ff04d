//! `main` may return a `Result`, and may hold other attributes.

#[manhole::main(socket_path = "/tmp/manhole-ui-result-{pid}")]
#[allow(unused_variables)]
fn main() -> Result<(), std::io::Error> {
    let unused = 1;
    Ok(())
}
