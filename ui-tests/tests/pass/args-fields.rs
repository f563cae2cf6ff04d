//! `fields(NAME = EXPR)`: values computed from the arguments, shown after
//! the parameters `args` shows, or alone.

struct Store;

struct Get {
    key: String,
}

impl Get {
    #[manhole::inspect(calls, args(skip_all, fields(key = self.key, len = self.key.len())))]
    async fn apply(&self, _store: &Store) -> usize {
        self.key.len()
    }

    #[manhole::inspect(calls, args(limit, fields(key = &self.key)))]
    async fn limited(&self, _store: &Store, limit: u32) -> u32 {
        limit
    }

    #[manhole::inspect(calls, args(fields(doubled = limit * 2)))]
    async fn doubled(&self, limit: u32) -> u32 {
        limit
    }
}

fn main() {
    let get = Get { key: "k".to_owned() };
    drop(get.apply(&Store));
    drop(get.limited(&Store, 1));
    drop(get.doubled(2));
}
