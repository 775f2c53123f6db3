//! Regression tests, one module per bug fixed (issue 11 on: "never lose a committed step … and
//! the silent footguns", and the bugs found since), each test named after the bug it pins.
//! Every test failed before its fix and passes after.
//!
//! The `train` example's own `main.rs` (with all its modules) is compiled in, so the tests of
//! issue 11 item 12 run the very program `cargo run --example train` runs, in a child process
//! (see `tests/train_child`).

#[allow(dead_code)]
#[path = "../train_child/mod.rs"]
mod train_child;

#[allow(dead_code)]
#[path = "../../examples/train/main.rs"]
mod train;
// The example's modules name each other as `crate::data` etc.
#[allow(unused_imports)]
use train::{checkpoint, data, distributed, model, optim, rng, trainer};

#[path = "../s3_common/mod.rs"]
mod s3_common;

mod common;

mod abandoned_save_keeps_running;
mod best_metric_missing_from_every_step;
mod commit_race_deletes_winner;
mod composite_format_leaves_a_twin;
mod corrupt_latest_step_resume;
mod gc_policy_keeps_nothing;
mod layers_drop_the_writer_lock;
mod nan_metric_and_missing_best_metric_warn;
mod no_retries_on_object_stores;
mod review_footguns;
mod second_writer_breaks_live_save;
mod skipped_save_says_nothing;
mod spurious_locked_while_spawning;
mod written_but_unreadable;

/// In the child process: runs `train` (see `train_child`). Must stay at the crate root: the
/// child is started with this exact test name.
#[test]
fn child_runs_the_train_program() {
    train_child::run_if_child(train::run_main);
}
