#[manhole::inspect]
fn default_value<T: Default + serde::Serialize>() -> T {
    T::default()
}

fn main() {}
