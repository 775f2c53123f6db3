//! Bad input, 1: step metadata files.

use super::*;

/// Broken `_CHECKPOINT_METADATA` files (truncated, not JSON, not an object, every field with a
/// wrong JSON type, unknown keys beside a non-empty custom_metadata). Spec §1.5: when listing,
/// the step is still a step, with no metadata (its time is the directory's mtime); asked for
/// explicitly, `step_metadata` is a `Corrupt` error naming the file, the step and the field;
/// `item_handlers` is empty (its documented outcome); nothing in the root changes.
#[test]
fn broken_step_metadata_is_no_metadata_when_listing_and_corrupt_when_asked() {
    let rows: &[(&str, (&[u8], &str))] = &[
        (
            "truncated",
            (
                b"{\"item_handlers\": {\"state\": \"orbax.checkpoint._src.han",
                "step metadata",
            ),
        ),
        ("not JSON", (b"this is not json", "step metadata")),
        ("binary junk", (b"\xff\xfe\x00\x01garbage", "not UTF-8")),
        ("empty file", (b"", "step metadata")),
        ("top level is an array", (b"[1, 2]", "not a JSON object")),
        ("top level is a string", (b"\"hello\"", "not a JSON object")),
        ("top level is null", (b"null", "not a JSON object")),
        ("top level is NaN", (b"NaN", "not a JSON object")),
        (
            "item_handlers a number",
            (b"{\"item_handlers\": 3}", "item_handlers"),
        ),
        (
            "item_handlers a list",
            (b"{\"item_handlers\": [\"state\"]}", "item_handlers"),
        ),
        (
            "item_handlers a bool",
            (b"{\"item_handlers\": true}", "item_handlers"),
        ),
        (
            "item_handlers value a number",
            (b"{\"item_handlers\": {\"state\": 3}}", "item_handlers"),
        ),
        ("metrics a list", (b"{\"metrics\": []}", "metrics")),
        ("metrics a string", (b"{\"metrics\": \"x\"}", "metrics")),
        (
            "performance_metrics a number",
            (b"{\"performance_metrics\": 1}", "performance_metrics"),
        ),
        (
            "init timestamp a string",
            (
                b"{\"init_timestamp_nsecs\": \"soon\"}",
                "init_timestamp_nsecs",
            ),
        ),
        (
            "init timestamp a float",
            (b"{\"init_timestamp_nsecs\": 1.5}", "init_timestamp_nsecs"),
        ),
        (
            "commit timestamp a string",
            (
                b"{\"commit_timestamp_nsecs\": \"x\"}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp a float",
            (
                b"{\"commit_timestamp_nsecs\": 1.7e18}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp a bool",
            (
                b"{\"commit_timestamp_nsecs\": true}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp beyond i64",
            (
                b"{\"commit_timestamp_nsecs\": 18446744073709551615}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "custom_metadata a list",
            (b"{\"custom_metadata\": [1]}", "custom_metadata"),
        ),
        (
            "custom_metadata a string",
            (b"{\"custom_metadata\": \"x\"}", "custom_metadata"),
        ),
        (
            "unknown key beside non-empty custom_metadata",
            (b"{\"extra\": 1, \"custom_metadata\": {\"a\": 2}}", "extra"),
        ),
    ];
    table(rows, |sb, (bytes, needle)| {
        let step = root_with_step_1(sb);
        let meta = step.join("_CHECKPOINT_METADATA");
        fs::write(&meta, bytes).unwrap();
        let before = tree_with_mtimes(&sb.root);

        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1], "still a step (spec §1.5)");
        let c = &m.checkpoints()[0];
        assert_eq!(
            c.time.timestamp_nanos_opt(),
            Some(mtime_nanos(&step)),
            "time falls back to the directory's mtime"
        );
        assert_eq!(
            c.metrics,
            Some(loss(0.5)),
            "metrics come from metrics/metrics"
        );
        expect_err(
            m.step_metadata(1),
            ErrorKind::Corrupt,
            &["1/_CHECKPOINT_METADATA", "step 1", needle],
        );
        assert!(m.item_handlers(1).unwrap().is_empty());
        assert_eq!(m.metrics(1).unwrap(), Some(loss(0.5)));
        drop(m);
        assert_unchanged(&before, &sb.root, "opening and reading");
        // A writing manager opens the root too (creating its lock file there), and its
        // retention may delete the step.
        let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
        assert_eq!(w.all_steps(), vec![1]);
        save_step(&mut w, 2);
        assert_eq!(w.all_steps(), vec![2]);
        assert!(!step.exists());
    });
}

/// Restoring a step whose `_CHECKPOINT_METADATA` is broken: `restore`'s docs promise `Corrupt`
/// "when a file is broken", and docs/design.md a message naming what was wrong and where.
///
/// Bug: `Core::restore` (ckpt-manager/src/shared.rs, `recorded_handlers`) swallows the parse
/// error and treats the file as absent, so the restore fails with `InvalidArgument: item "state"
/// has no registered handler and the checkpoint records no handler type for it` — the wrong
/// kind, and a message that hides the broken file.
#[test]
fn restore_with_broken_step_metadata_is_corrupt_naming_the_file() {
    let rows: &[(&str, &[u8])] = &[
        ("truncated", b"{\"item_handlers\": {\"sta"),
        ("item_handlers a number", b"{\"item_handlers\": 3}"),
        ("not JSON", b"garbage"),
    ];
    table(rows, |sb, bytes| {
        let step = root_with_step_1(sb);
        fs::write(step.join("_CHECKPOINT_METADATA"), bytes).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Corrupt,
            &["_CHECKPOINT_METADATA", "step 1"],
        );
    });
}

/// Metadata Orbax accepts: unknown keys move into an empty `custom_metadata` (spec §1.5), null
/// means default, negative and extreme timestamps are integers like any other.
#[test]
fn unusual_but_valid_step_metadata_is_read() {
    case("unknown keys, custom_metadata absent or empty", |sb| {
        let step = root_with_step_1(sb);
        for custom in [
            "",
            ", \"custom_metadata\": {}",
            ", \"custom_metadata\": null",
        ] {
            let text = format!(
                "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"extra\": [1, 2], \"note\": \"x\"{custom}}}"
            );
            fs::write(step.join("_CHECKPOINT_METADATA"), text).unwrap();
            let m = reader(&sb.root).unwrap();
            let meta = m.step_metadata(1).unwrap();
            let want: Map<String, Value> =
                serde_json::from_value(json!({"extra": [1, 2], "note": "x"})).unwrap();
            assert_eq!(meta.custom_metadata, want, "{custom}");
            assert_eq!(
                m.restore(Some(1)).unwrap().json_value("state").unwrap(),
                &json!({"a": 1})
            );
        }
    });
    case("every field null", |sb| {
        let step = root_with_step_1(sb);
        fs::write(
            step.join("_CHECKPOINT_METADATA"),
            "{\"item_handlers\": null, \"metrics\": null, \"performance_metrics\": null, \
             \"init_timestamp_nsecs\": null, \"commit_timestamp_nsecs\": null, \"custom_metadata\": null}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        let meta = m.step_metadata(1).unwrap();
        assert_eq!(meta.item_handlers, None);
        assert_eq!(meta.commit_timestamp_nsecs, None);
        // No handler recorded for the item: an InvalidArgument naming it (registry docs).
        expect_err(
            m.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["\"state\"", "no registered handler", "step 1"],
        );
    });
    case(
        "commit timestamp NaN reads as null (pyjson deviation)",
        |sb| {
            let step = root_with_step_1(sb);
            fs::write(
            step.join("_CHECKPOINT_METADATA"),
            format!(
                "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"commit_timestamp_nsecs\": NaN}}"
            ),
        )
        .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(m.step_metadata(1).unwrap().commit_timestamp_nsecs, None);
            assert_eq!(
                m.checkpoints()[0].time.timestamp_nanos_opt(),
                Some(mtime_nanos(&step))
            );
        },
    );
    for (name, ts) in [
        ("negative commit timestamp", i64::MIN),
        ("largest commit timestamp", i64::MAX),
        ("zero commit timestamp", 0),
    ] {
        case(name, |sb| {
            let step = root_with_step_1(sb);
            fs::write(
                step.join("_CHECKPOINT_METADATA"),
                format!(
                    "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"commit_timestamp_nsecs\": {ts}}}"
                ),
            )
            .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(m.checkpoints()[0].time.timestamp_nanos_opt(), Some(ts));
            assert_eq!(m.step_metadata(1).unwrap().commit_timestamp_nsecs, Some(ts));
            let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
            save_step(&mut w, 2);
            assert_eq!(w.all_steps(), vec![2]);
        });
    }
}
