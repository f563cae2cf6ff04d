struct Point {
    x: i32,
}

#[manhole::command]
fn move_to(point: Point) -> i32 {
    point.x
}

fn main() {}
