//! Bad input, 12: invalid options.

use super::*;

/// Options that cannot work: `InvalidConfig` naming the option when the manager is built, and
/// nothing created (deviation D4).
#[test]
fn invalid_options_are_invalid_config_and_create_nothing() {
    type Opt = fn(CheckpointManagerBuilder) -> CheckpointManagerBuilder;
    let rows: &[(&str, (Opt, &str))] = &[
        (
            "save_interval_steps 0",
            (|b| b.save_interval_steps(0), "save_interval_steps"),
        ),
        ("keep_period 0", (|b| b.keep_period(0), "keep_period")),
        (
            "step_prefix with /",
            (|b| b.step_prefix("a/b"), "step_prefix"),
        ),
        (
            "step_prefix with backslash",
            (|b| b.step_prefix("a\\b"), "step_prefix"),
        ),
        (
            "step_prefix with NUL",
            (|b| b.step_prefix("a\0b"), "step_prefix"),
        ),
        (
            "step_prefix with tmp suffix",
            (|b| b.step_prefix("x.orbax-checkpoint-tmp"), "step_prefix"),
        ),
        (
            "todelete_subdir a/b",
            (|b| b.todelete_subdir("a/b"), "todelete_subdir"),
        ),
        (
            "todelete_subdir ..",
            (|b| b.todelete_subdir(".."), "todelete_subdir"),
        ),
        (
            "todelete_subdir .",
            (|b| b.todelete_subdir("."), "todelete_subdir"),
        ),
        (
            "todelete_subdir empty",
            (|b| b.todelete_subdir(""), "todelete_subdir"),
        ),
        (
            "todelete_subdir absolute",
            (|b| b.todelete_subdir("/tmp/trash"), "todelete_subdir"),
        ),
        (
            "todelete_subdir step-like",
            (|b| b.todelete_subdir("7"), "todelete_subdir"),
        ),
        (
            "todelete_subdir step-like with prefix",
            (
                |b| b.step_prefix("run").todelete_subdir("run_7"),
                "todelete_subdir",
            ),
        ),
        (
            "todelete_subdir tmp name",
            (
                |b| b.todelete_subdir("t.orbax-checkpoint-tmp"),
                "todelete_subdir",
            ),
        ),
        (
            "preservation_policy and max_to_keep",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .max_to_keep(3)
                },
                "preservation_policy",
            ),
        ),
        (
            "preservation_policy and keep_period",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .keep_period(10)
                },
                "preservation_policy",
            ),
        ),
        (
            "preservation_policy and keep_time_interval",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .keep_time_interval_secs(60)
                },
                "preservation_policy",
            ),
        ),
        (
            "empty best_metric",
            (|b| b.best_metric("", BestMode::Min), "best_metric"),
        ),
    ];
    table(rows, |sb, (opt, needle)| {
        for cleanup in [false, true] {
            let b = opt(writer(&sb.root))
                .cleanup_tmp_directories(cleanup)
                .root_metadata(loss(1.0));
            expect_err(b.build(), ErrorKind::InvalidConfig, &[needle]);
            assert!(!sb.root.exists(), "nothing created");
        }
        // On an existing root: nothing written either.
        good_root(&sb.root, &[1]);
        let before = tree_with_mtimes(&sb.root);
        expect_err(
            opt(writer(&sb.root)).cleanup_tmp_directories(true).build(),
            ErrorKind::InvalidConfig,
            &[needle],
        );
        assert_unchanged(&before, &sb.root, "refused options");
    });
}

/// A step prefix or todelete_subdir beginning or ending with whitespace builds names the store
/// cannot represent (opendal trims them; `validate_path` rejects them), so every save (or every
/// delete) would fail later: D4 ("fail early, before anything is written") asks for
/// `InvalidConfig` when the manager is built.
///
/// Bug: `StandardNameFormat::new` (ckpt-core/src/name_format.rs) and
/// `CheckpointManagerOptions::validate` (ckpt-manager/src/options.rs, via `validate_item_name`)
/// accept them: the manager builds, and the first save (or delete) fails with `InvalidArgument:
/// invalid store path`.
#[test]
fn whitespace_prefix_and_todelete_subdir_are_invalid_config() {
    type Opt = fn(CheckpointManagerBuilder) -> CheckpointManagerBuilder;
    let rows: &[(&str, (Opt, &str))] = &[
        (
            "step_prefix leading space",
            (|b| b.step_prefix(" run"), "step_prefix"),
        ),
        (
            "step_prefix trailing newline",
            (|b| b.step_prefix("run\n"), "step_prefix"),
        ),
        (
            "todelete_subdir trailing space",
            (|b| b.todelete_subdir("trash "), "todelete_subdir"),
        ),
    ];
    table(rows, |sb, (opt, needle)| {
        expect_err(
            opt(writer(&sb.root)).build(),
            ErrorKind::InvalidConfig,
            &[needle],
        );
        assert!(!sb.root.exists());
    });
}
