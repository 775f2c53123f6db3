//! Bad input, 8: item names.

use super::*;

/// Item names that are not one plain path component, or are reserved: `save` refuses them with
/// `InvalidArgument` naming the item and the step, before anything is written (the root, even
/// its mtime, is unchanged), synchronously and asynchronously; the manager still saves after.
#[test]
fn bad_item_names_are_refused_before_writing() {
    let rows: &[(&str, &str)] = &[
        ("slash", "a/b"),
        ("trailing slash", "a/"),
        ("parent", ".."),
        ("parent traversal", "../escape"),
        ("deep traversal", "a/../../escape"),
        ("current dir", "."),
        ("empty", ""),
        ("absolute", "/abs"),
        ("absolute outside", "/tmp/ckpt-bad-input-evil"),
        ("backslash", "a\\b"),
        ("NUL", "nul\0byte"),
        ("tmp suffix", "x.orbax-checkpoint-tmp"),
        ("legacy tmp suffix", "x.orbax-checkpoint-tmp-123"),
        ("step metadata file", "_CHECKPOINT_METADATA"),
        ("commit file", "commit_success.txt"),
        ("checksum manifest", "_CKPT_CHECKSUMS"),
        ("metrics item with metrics", "metrics"),
    ];
    table(rows, |sb, name| bad_item_name_case(sb, name));
}

/// Item names beginning or ending with whitespace: the store cannot represent them (opendal trims
/// paths, `validate_path` rejects such components), so `save` must refuse them up front like the
/// other unusable names.
///
/// Bug: `ckpt_core::validate_item_name` (ckpt-core/src/lib.rs) accepts them, so the refusal comes
/// from the store only once writing has begun: a synchronous save creates and removes
/// `1.orbax-checkpoint-tmp` (the root's mtime changes) and fails with `InvalidArgument: invalid
/// store path "1.orbax-checkpoint-tmp/ lead"`; an asynchronous save returns `Ok(true)` and the
/// error only comes back from the next call.
#[test]
fn item_names_with_edge_whitespace_are_refused_before_writing() {
    let rows: &[(&str, &str)] = &[
        ("leading space", " lead"),
        ("trailing space", "trail "),
        ("trailing newline", "x\n"),
        ("only spaces", "   "),
    ];
    table(rows, |sb, name| bad_item_name_case(sb, name));
}

fn bad_item_name_case(sb: &Sandbox, name: &str) {
    for async_save in [false, true] {
        let mut m = CheckpointManager::builder(sb.root_str())
            .enable_async_checkpointing(async_save)
            .build()
            .unwrap();
        let before = tree_with_mtimes(&sb.root);
        let metrics = (name == "metrics").then(|| loss(0.1));
        let opts = SaveOptions {
            metrics,
            ..Default::default()
        };
        let quoted = format!("{name:?}");
        let items = Composite::new()
            .json_value(name, json!({"evil": true}))
            .json_value("ok", json!(1));
        expect_err(
            m.save(1, items, opts),
            ErrorKind::InvalidArgument,
            &[&quoted, "step 1"],
        );
        m.wait_until_finished().unwrap();
        assert_unchanged(&before, &sb.root, &format!("async {async_save}"));
        assert!(m.all_steps().is_empty());
        // Nothing was left behind that blocks the step: it saves now.
        save_step(&mut m, 1);
        m.delete(1).unwrap();
    }
}

/// An empty item set: `InvalidArgument` naming the step, nothing written, sync and async.
#[test]
fn empty_item_set_is_refused() {
    for async_save in [false, true] {
        case(&format!("empty item set, async {async_save}"), |sb| {
            let mut m = CheckpointManager::builder(sb.root_str())
                .enable_async_checkpointing(async_save)
                .build()
                .unwrap();
            let before = tree_with_mtimes(&sb.root);
            expect_err(
                m.save(1, Composite::new(), SaveOptions::default()),
                ErrorKind::InvalidArgument,
                &["empty", "step 1"],
            );
            expect_err(
                m.save(
                    2,
                    Composite::new(),
                    SaveOptions::default().metrics(loss(1.0)).force(true),
                ),
                ErrorKind::InvalidArgument,
                &["empty", "step 2"],
            );
            m.wait_until_finished().unwrap();
            assert_unchanged(&before, &sb.root, "empty item set");
            assert!(m.all_steps().is_empty());
        });
    }
}

/// A handler registered in the options for an item name that cannot be one: a bad option found
/// when the manager is built, which `ErrorKind::InvalidConfig` is for ("options that cannot work
/// together or a bad value, found when a manager or policy is built"); nothing created.
///
/// Bug: `Core::open` (ckpt-manager/src/shared.rs, `validate_item_name(item)?` in the handler
/// loop) returns the item-name check's `InvalidArgument` unchanged.
#[test]
fn handler_option_with_bad_item_name_is_invalid_config() {
    let rows: &[(&str, &str)] = &[
        ("traversal", "../x"),
        ("slash", "a/b"),
        ("empty", ""),
        ("tmp suffix", "x.orbax-checkpoint-tmp"),
    ];
    table(rows, |sb, name| {
        let r = writer(&sb.root)
            .handler(*name, Arc::new(ckpt_manager::handlers::BytesHandler))
            .build();
        expect_err(r, ErrorKind::InvalidConfig, &[&format!("{name:?}")]);
        assert!(!sb.root.exists(), "nothing created");
    });
}
