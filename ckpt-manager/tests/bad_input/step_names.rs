//! Bad input, 7: step directory names.

use super::*;

/// Directory names that are not step names of the default format (spec §1.2: anchored
/// `0|[1-9]\d*`), each holding a complete committed step written by hand: never listed, never
/// restored, and never touched by retention (max_to_keep=1), `delete`, `apply_preservation`,
/// cleanup of tmp directories (atomic rename and commit file), nor by the step they look like
/// being saved.
#[test]
fn junk_step_names_are_not_steps_and_never_touched() {
    let rows: &[(&str, (&str, Option<Step>))] = &[
        ("leading zeros", ("007", Some(7))),
        ("double zero", ("00", Some(0))),
        ("plus sign", ("+5", Some(5))),
        ("minus sign", ("-1", None)),
        ("exponent", ("1e3", Some(1000))),
        ("hex", ("0x10", Some(16))),
        ("decimal point", ("5.0", Some(5))),
        ("leading space", (" 5", Some(5))),
        ("trailing space", ("5 ", Some(5))),
        ("trailing newline", ("5\n", Some(5))),
        ("junk suffix", ("5x", Some(5))),
        ("backup suffix", ("5.bak", Some(5))),
        ("underscore suffix", ("5_", Some(5))),
        ("underscore prefix", ("_5", Some(5))),
        ("prefix without a configured prefix", ("step_5", Some(5))),
        ("arabic-indic digit", ("\u{663}", Some(3))),
        ("fullwidth digit", ("\u{ff15}", Some(5))),
        ("zero-width space", ("5\u{200b}", Some(5))),
        ("u64::MAX + 1", ("18446744073709551616", None)),
        ("huge number", ("99999999999999999999999999999", None)),
    ];
    table(rows, |sb, (name, looks_like)| {
        junk_name_case(sb, name, *looks_like, AtomicityMode::AtomicRename);
    });
}

/// The same in commit-file mode, where every uncommitted directory whose name is a step name
/// counts as tmp: names that are not step names must survive the cleanup, and so must the root's
/// `metadata/` (spec §1.3 "Caution").
#[test]
fn junk_step_names_survive_commit_file_cleanup() {
    let rows: &[(&str, (&str, Option<Step>))] = &[
        ("leading zeros", ("007", Some(7))),
        ("junk suffix", ("5x", Some(5))),
        ("plus sign", ("+5", Some(5))),
        ("exponent", ("1e3", Some(1000))),
        ("metadata dir", ("metadata", None)),
    ];
    table(rows, |sb, (name, looks_like)| {
        junk_name_case(sb, name, *looks_like, AtomicityMode::CommitFile);
    });
}

fn junk_name_case(sb: &Sandbox, name: &str, looks_like: Option<Step>, mode: AtomicityMode) {
    let open = || writer(&sb.root).atomicity(mode);
    let mut m = open().build().unwrap();
    save_step(&mut m, 1);
    save_step(&mut m, 2);
    m.close().unwrap();
    let junk = sb.root.join(name);
    fake_step(&junk, &json!({"junk": name}));
    if mode == AtomicityMode::CommitFile {
        // Uncommitted in this mode: only a commit file makes a step.
        for f in ["commit_success.txt", "state/commit_success.txt"] {
            fs::remove_file(junk.join(f)).unwrap();
        }
    }
    let before = tree_with_mtimes(&junk);

    let r = CheckpointManager::builder(sb.root_str())
        .read_only(true)
        .atomicity(mode)
        .build()
        .unwrap();
    assert_eq!(r.all_steps(), vec![1, 2], "{name:?} is not a step");
    if let Some(s) = looks_like {
        if s != 1 && s != 2 {
            expect_err(
                r.restore(Some(s)),
                ErrorKind::NotFound,
                &[&format!("step {s}")],
            );
            expect_err(r.metrics(s), ErrorKind::NotFound, &[&format!("step {s}")]);
        }
    }
    assert_eq!(r.restore(None).unwrap().step(), 2);

    let mut w = open()
        .max_to_keep(1)
        .cleanup_tmp_directories(true)
        .build()
        .unwrap();
    assert_eq!(w.all_steps(), vec![1, 2]);
    save_step(&mut w, 3);
    assert_eq!(w.all_steps(), vec![3], "retention ran");
    if let Some(s) = looks_like.filter(|s| *s > 3) {
        save_step(&mut w, s);
        assert_eq!(w.all_steps(), vec![s]);
        w.delete(s).unwrap();
    } else {
        w.delete(3).unwrap();
    }
    expect_err(w.delete(5), ErrorKind::NotFound, &["step 5"]);
    save_step(&mut w, 20_000);
    let decisions = w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
    assert_eq!(decisions.len(), 1);
    assert!(decisions[0].deleted);
    w.close().unwrap();
    // Reopening with cleanup again.
    let w = open().cleanup_tmp_directories(true).build().unwrap();
    assert!(w.all_steps().is_empty());
    assert_unchanged(&before, &junk, name);
}

/// With a prefix and a fixed length (spec §1.2 fixed-length rules), near misses are not steps.
#[test]
fn near_miss_names_with_prefix_and_fixed_length() {
    case("prefix step, fixed length 3", |sb| {
        let open = || {
            writer(&sb.root)
                .step_prefix("step")
                .step_format_fixed_length(3)
        };
        let mut m = open().build().unwrap();
        save_step(&mut m, 7);
        m.close().unwrap();
        assert!(sb.root.join("step_007").is_dir());
        let junk = [
            "step_07",
            "step_0007",
            "step__007",
            "Step_007",
            "step_007x",
            "step-007",
            "step007",
            "007",
            "7",
            "step_",
            "step_ 007",
            "xstep_008",
            "step_1000.bak",
        ];
        for j in junk {
            fake_step(&sb.root.join(j), &json!(j));
        }
        let before = tree_with_mtimes(&sb.root);
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .step_prefix("step")
            .step_format_fixed_length(3)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![7]);
        drop(r);
        assert_unchanged(&before, &sb.root, "read-only open");
        let mut w = open()
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        save_step(&mut w, 1000);
        assert_eq!(w.all_steps(), vec![1000]);
        assert!(!sb.root.join("step_007").exists());
        for j in junk {
            assert!(sb.root.join(j).join("state/metadata").is_file(), "{j} kept");
        }
    });
}

/// `u64::MAX` is a valid step name: listed, restored; saving it again is `AlreadyExists`, and no
/// arithmetic on it overflows.
#[test]
fn largest_step_is_a_step() {
    case("step u64::MAX", |sb| {
        good_root(&sb.root, &[1]);
        let mut w = writer(&sb.root).max_to_keep(2).build().unwrap();
        save_step(&mut w, u64::MAX);
        assert_eq!(w.all_steps(), vec![1, u64::MAX]);
        assert!(sb.root.join("18446744073709551615").is_dir());
        assert_eq!(w.latest_step(), Some(u64::MAX));
        assert!(!w.should_save(u64::MAX));
        assert!(!w
            .save(
                u64::MAX,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default()
            )
            .unwrap());
        expect_err(
            w.save(
                u64::MAX,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default().force(true),
            ),
            ErrorKind::AlreadyExists,
            &["step 18446744073709551615"],
        );
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.restore(None).unwrap().step(), u64::MAX);
    });
}

/// A step directory that is a file, and step directories that are not committed.
#[test]
fn step_entries_that_are_not_committed_directories() {
    case("step name is a file", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("5"), b"a file named like a step").unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(r.restore(Some(5)), ErrorKind::NotFound, &["step 5"]);
        expect_err(r.metrics(5), ErrorKind::NotFound, &["step 5"]);
        expect_err(r.step_metadata(5), ErrorKind::NotFound, &["step 5"]);
        let mut w = writer(&sb.root)
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        expect_err(w.delete(5), ErrorKind::NotFound, &["step 5"]);
        expect_err(
            w.save(
                5,
                Composite::new().json_value("s", json!(5)),
                SaveOptions::default(),
            ),
            ErrorKind::AlreadyExists,
            &["step 5", "/5"],
        );
        save_step(&mut w, 6);
        assert_eq!(w.all_steps(), vec![6]);
        assert_eq!(
            fs::read(sb.root.join("5")).unwrap(),
            b"a file named like a step"
        );
        assert!(!sb.root.join("5.orbax-checkpoint-tmp").exists());
    });
    case("uncommitted tmp directory (atomic rename)", |sb| {
        good_root(&sb.root, &[1]);
        fake_step(&sb.root.join("5.orbax-checkpoint-tmp"), &json!("tmp"));
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(r.restore(Some(5)), ErrorKind::NotFound, &["step 5"]);
        assert_eq!(r.restore(None).unwrap().step(), 1, "latest committed");
        assert!(sb.root.join("5.orbax-checkpoint-tmp").is_dir(), "read-only");
    });
    case("uncommitted step directory (commit file)", |sb| {
        let open = || writer(&sb.root).atomicity(AtomicityMode::CommitFile);
        let mut m = open().build().unwrap();
        save_step(&mut m, 1);
        save_step(&mut m, 5);
        fs::remove_file(sb.root.join("5/commit_success.txt")).unwrap();
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .atomicity(AtomicityMode::CommitFile)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        // The documented outcome: InvalidArgument "incomplete checkpoint".
        expect_err(
            r.restore(Some(5)),
            ErrorKind::InvalidArgument,
            &["incomplete", "step 5"],
        );
        assert_eq!(r.restore(None).unwrap().step(), 1);
    });
    case("uncommitted item directory inside a committed step", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir(sb.root.join("1/half.orbax-checkpoint-tmp")).unwrap();
        fs::write(sb.root.join("1/half.orbax-checkpoint-tmp/metadata"), b"{}").unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(
            r.restore(Some(1)).unwrap().names(),
            vec!["metrics", "state"]
        );
        expect_err(
            r.restore_items(Some(1), &["half.orbax-checkpoint-tmp"]),
            ErrorKind::NotFound,
            &["half.orbax-checkpoint-tmp", "step 1"],
        );
    });
    case("committed step without items", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_dir_all(sb.root.join("1/state")).unwrap();
        fs::remove_dir_all(sb.root.join("1/metrics")).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(
            r.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["holds no items", "step 1"],
        );
    });
}
