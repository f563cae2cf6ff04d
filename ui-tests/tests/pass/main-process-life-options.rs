//! Every process-life option of `#[manhole::main]`, and inner attributes
//! in the body.

#[manhole::main(
    socket_path = "/tmp/manhole-ui-life-{pid}",
    verbose = false,
    oneshot_on = "USR2",
    sigmask = true,
    reinstall_on_fork = false,
    reinstall_delay_ms = 250
)]
fn main() {
    #![allow(unused_variables)]
    let unused = 1;
}
