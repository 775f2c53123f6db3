//! The log output of the `ckpt` tool and the `train` example (feature `cli`). The library
//! reports through `tracing` only (events under the targets `ckpt_manager`, `ckpt_storage`,
//! `ckpt_handlers`, …); a program using it as a library installs its own subscriber. This one
//! writes to stderr, one line per event.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs a subscriber printing events to stderr, filtered by `RUST_LOG` when it is set (the
/// `target=level,level` syntax of `tracing_subscriber::filter::Targets`, e.g.
/// `RUST_LOG=ckpt_manager=debug,warn`), else by the verbosity: `quiet` → errors only; `verbose`
/// 0 → warnings and errors (the default: what loses work, e.g. a failed retention delete, is a
/// warning or an error), 1 → info (each step saved, deleted, why), 2 → debug, 3 or more → trace.
/// Returns a note to print when `RUST_LOG` could not be parsed (the verbosity is used then).
/// Installing twice keeps the first.
pub fn init_logging(verbose: u8, quiet: bool) -> Option<String> {
    let default = if quiet {
        LevelFilter::ERROR
    } else {
        match verbose {
            0 => LevelFilter::WARN,
            1 => LevelFilter::INFO,
            2 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    };
    let mut note = None;
    let targets = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => match spec.parse::<Targets>() {
            Ok(t) => t,
            Err(e) => {
                note = Some(format!(
                    "RUST_LOG={spec:?} is not a log filter ({e}); logging at {default}"
                ));
                Targets::new().with_default(default)
            }
        },
        _ => Targets::new().with_default(default),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(targets)
        .with(fmt)
        .try_init();
    note
}
