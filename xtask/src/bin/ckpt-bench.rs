//! The benchmark binary of `cargo xtask bench` (built with `--release` by the xtask, which passes
//! its arguments through): see `xtask::bench`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    xtask::bench::bench_main(&args)
}
