struct Cache;

impl Cache {
    #[manhole::command]
    fn clear(&self) -> usize {
        0
    }
}

fn main() {}
