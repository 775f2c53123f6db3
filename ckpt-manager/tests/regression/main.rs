//! One test per bug fixed, named after the bug (issue 11 on): each failed before its fix and
//! passes after. The module names say what went wrong.

#[path = "../s3_common/mod.rs"]
mod s3_common;

mod abandoned_save_keeps_running;
mod commit_race_deletes_winner;
mod layers_drop_the_writer_lock;
mod no_retries_on_object_stores;
mod second_writer_breaks_live_save;
mod spurious_locked_while_spawning;
