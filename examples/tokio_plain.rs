//! Async commands with the plain API: `install` outside any runtime.
//!
//! With `--handle`, the runtime is given with `Options::tokio_handle`;
//! without it, the manhole knows no runtime and an async command is the
//! error `no_runtime`.

use std::io::BufRead;

/// Answers after an await.
#[manhole::command]
async fn ping() -> &'static str {
    tokio::task::yield_now().await;
    "pong"
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()?;
    let mut options = manhole::Options::new();
    if std::env::args().any(|arg| arg == "--handle") {
        options = options.tokio_handle(runtime.handle().clone());
    }
    let _manhole = options.install()?;
    println!("ready");
    // Runs until stdin closes.
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(())
}
