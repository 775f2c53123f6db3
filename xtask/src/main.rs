//! Developer tasks: `cargo xtask <task>`.

fn main() {
    let task = std::env::args().nth(1).unwrap_or_default();
    eprintln!("xtask: unknown task {task:?}");
    std::process::exit(2);
}
