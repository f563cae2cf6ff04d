#[derive(Debug)]
struct Get {
    key: String,
}

impl Get {
    #[manhole::inspect(calls, args(skip(databse)))]
    async fn apply(&self, database: u32) -> usize {
        self.key.len() + database as usize
    }
}

fn main() {}
