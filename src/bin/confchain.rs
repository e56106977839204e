//! The confchain command-line tool (built with `--features cli`).
fn main() {
    println!("confchain {}", env!("CARGO_PKG_VERSION"));
}
