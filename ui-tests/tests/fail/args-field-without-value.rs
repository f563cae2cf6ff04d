#[derive(Debug)]
struct Get {
    key: String,
}

impl Get {
    #[manhole::inspect(calls, args(skip_all, fields(key)))]
    async fn apply(&self) -> usize {
        self.key.len()
    }
}

fn main() {}
