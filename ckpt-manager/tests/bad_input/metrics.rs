//! Bad input, 3: metrics files.

use super::*;

/// Broken `<step>/metrics/metrics`: listing treats it as no metrics (so the step never ranks
/// best); `metrics(step)` is `Corrupt` naming the file and the step.
#[test]
fn broken_metrics_file_is_no_metrics_when_listing_and_corrupt_when_asked() {
    let rows: &[(&str, (&[u8], &str))] = &[
        ("truncated", (b"{\"loss\": 0.", "cannot read metrics")),
        ("not JSON", (b"loss=0.1", "cannot read metrics")),
        ("binary junk", (b"\xc3\x28", "not UTF-8")),
        ("empty file", (b"", "cannot read metrics")),
        ("a list", (b"[0.1]", "not a JSON object")),
        ("a number", (b"0.1", "not a JSON object")),
        ("null", (b"null", "not a JSON object")),
    ];
    table(rows, |sb, (bytes, needle)| {
        good_root(&sb.root, &[1, 2]);
        fs::write(sb.root.join("1/metrics/metrics"), bytes).unwrap();
        let m = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .best_metric("loss", BestMode::Max)
            .build()
            .unwrap();
        assert_eq!(m.all_steps(), vec![1, 2]);
        assert_eq!(m.checkpoints()[0].metrics, None);
        assert_eq!(m.best_step(), Some(2));
        expect_err(
            m.metrics(1),
            ErrorKind::Corrupt,
            &["1/metrics/metrics", "step 1", needle],
        );
        expect_err(m.step_metadata(1), ErrorKind::Corrupt, &["metrics/metrics"]);
        assert_eq!(m.metrics(2).unwrap(), Some(loss(0.2)));
    });
}

/// Hand-written `{"loss": NaN}`, `Infinity`, `-Infinity` (what Python's json.dumps writes): read
/// as null, never the best step under either mode, no panic, and retention by best metric keeps
/// the real best.
#[test]
fn nan_and_infinite_metrics_read_as_null_and_never_best() {
    for mode in [BestMode::Min, BestMode::Max] {
        case(&format!("non-finite metrics, best mode {mode}"), |sb| {
            good_root(&sb.root, &[1, 2, 3, 4]);
            for (step, token) in [(1, "NaN"), (2, "Infinity"), (3, "-Infinity")] {
                fs::write(
                    sb.root.join(format!("{step}/metrics/metrics")),
                    format!("{{\"loss\": {token}, \"acc\": [NaN, 1]}}"),
                )
                .unwrap();
            }
            let m = CheckpointManager::builder(sb.root_str())
                .read_only(true)
                .best_metric("loss", mode)
                .build()
                .unwrap();
            assert_eq!(m.all_steps(), vec![1, 2, 3, 4]);
            for s in 1..=3 {
                assert_eq!(
                    m.metrics(s).unwrap().map(Value::Object),
                    Some(json!({"loss": null, "acc": [null, 1]}))
                );
            }
            assert_eq!(m.best_step(), Some(4));
            drop(m);
            let mut w = writer(&sb.root)
                .best_metric("loss", mode)
                .max_to_keep(1)
                .keep_checkpoints_without_metrics(false)
                .build()
                .unwrap();
            w.save(
                5,
                Composite::new().json_value("state", json!(5)),
                SaveOptions::default().metrics(loss(if mode == BestMode::Min { 0.9 } else { 0.1 })),
            )
            .unwrap();
            assert_eq!(w.all_steps(), vec![4], "only the real best survives");
            assert_eq!(w.best_step(), Some(4));
        });
    }
}

/// Metrics holding `f64::NAN` / infinities given to `save`: serde_json turns them into null, the
/// file holds `null`, and the step is never best.
#[test]
fn saving_nan_metrics_writes_null() {
    case("save with f64::NAN metrics", |sb| {
        let mut m = writer(&sb.root)
            .best_metric("loss", BestMode::Min)
            .build()
            .unwrap();
        for (step, v) in [(1, f64::NAN), (2, f64::INFINITY), (3, f64::NEG_INFINITY)] {
            let mut metrics = loss(v);
            metrics.insert("other".into(), json!([v, 1.0]));
            assert!(m
                .save(
                    step,
                    Composite::new().json_value("state", json!(step)),
                    SaveOptions::default().metrics(metrics),
                )
                .unwrap());
            assert_eq!(
                fs::read_to_string(sb.root.join(format!("{step}/metrics/metrics"))).unwrap(),
                "{\"loss\": null, \"other\": [null, 1.0]}",
                "step {step}"
            );
        }
        assert_eq!(m.best_step(), None, "no step has a usable loss");
        save_step(&mut m, 4);
        assert_eq!(m.best_step(), Some(4));
        let r = reader(&sb.root).unwrap();
        assert_eq!(
            r.metrics(1).unwrap().map(Value::Object),
            Some(json!({"loss": null, "other": [null, 1.0]}))
        );
    });
}

/// Metrics lacking `best_metric` (deviation D5): `InvalidArgument` naming the metric and the
/// step before anything is written, for synchronous and asynchronous saves; the next save works.
#[test]
fn metrics_lacking_the_best_metric_are_refused_before_writing() {
    for async_save in [false, true] {
        case(&format!("missing best metric, async {async_save}"), |sb| {
            let mut m = CheckpointManager::builder(sb.root_str())
                .enable_async_checkpointing(async_save)
                .best_metric("val_loss", BestMode::Min)
                .max_to_keep(1)
                .build()
                .unwrap();
            save_metrics_step(&mut m, 1, "val_loss");
            let before = tree_with_mtimes(&sb.root);
            expect_err(
                m.save(
                    2,
                    Composite::new().json_value("state", json!(2)),
                    SaveOptions::default().metrics(loss(0.1)),
                ),
                ErrorKind::InvalidArgument,
                &["\"val_loss\"", "step 2"],
            );
            m.wait_until_finished().unwrap();
            assert_unchanged(&before, &sb.root, "refused save");
            assert_eq!(m.all_steps(), vec![1]);
            save_metrics_step(&mut m, 3, "val_loss");
            assert_eq!(m.all_steps(), vec![3]);
        });
    }
}

fn save_metrics_step(m: &mut CheckpointManager, step: Step, key: &str) {
    let mut metrics = Map::new();
    metrics.insert(key.into(), json!(1.0 / step as f64));
    assert!(m
        .save(
            step,
            Composite::new().json_value("state", json!(step)),
            SaveOptions::default().metrics(metrics),
        )
        .unwrap());
    m.wait_until_finished().unwrap();
}
