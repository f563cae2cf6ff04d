// An async command's future runs on the runtime's workers, so it must be
// `Send`.

use std::rc::Rc;

#[manhole::command]
async fn counts() -> usize {
    let shared = Rc::new(1);
    tokio::task::yield_now().await;
    *shared
}

fn main() {}
