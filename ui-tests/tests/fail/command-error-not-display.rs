#[derive(Debug)]
struct ReloadError;

#[manhole::command]
fn reload() -> Result<u32, ReloadError> {
    Err(ReloadError)
}

fn main() {}
