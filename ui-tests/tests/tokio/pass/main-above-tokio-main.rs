//! `#[manhole::main]` above `#[tokio::main]`: the manhole is installed
//! inside the runtime, and async commands compile with the feature on.

/// Answers after an await.
#[manhole::command]
async fn ping(times: Option<u32>) -> Result<String, String> {
    tokio::task::yield_now().await;
    Ok("pong".repeat(times.unwrap_or(1) as usize))
}

#[manhole::main(verbose = false, command_timeout_ms = 5000)]
#[tokio::main]
async fn main() {}
