//! Bad input, 10: symlinks.

use super::*;

/// Root entries named like steps (or tmp dirs) that are symlinks — to a complete committed step
/// outside the root, to a file, dangling, or a loop: never listed, never restored, never deleted
/// or written through by retention (max_to_keep=1), `delete`, `apply_preservation` or
/// `cleanup_tmp_directories`; saving the step they name is refused (`AlreadyExists`).
#[test]
fn step_named_symlinks_are_not_steps_and_never_followed() {
    let rows: &[(&str, (&str, &str))] = &[
        ("link to an outside step", ("7", "outside/stepdir")),
        ("link to an outside file", ("7", "outside/victim.txt")),
        ("dangling link", ("7", "nowhere")),
        ("link to itself", ("7", "root/7")),
        (
            "tmp-named link to an outside step",
            ("7.orbax-checkpoint-tmp", "outside/stepdir"),
        ),
    ];
    table(rows, |sb, (name, target)| {
        good_root(&sb.root, &[1, 2]);
        let link = sb.root.join(name);
        symlink(sb.base.join(target), &link).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1, 2]);
        expect_err(r.restore(Some(7)), ErrorKind::NotFound, &["step 7"]);
        expect_err(r.metrics(7), ErrorKind::NotFound, &["step 7"]);
        expect_err(r.item_metadata(7), ErrorKind::NotFound, &["step 7"]);
        let mut w = writer(&sb.root)
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        save_step(&mut w, 3);
        assert_eq!(w.all_steps(), vec![3]);
        expect_err(w.delete(7), ErrorKind::NotFound, &["step 7"]);
        let d = w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
        assert_eq!(d.len(), 1);
        if name.contains("tmp") {
            // The leftover "tmp dir" of step 7 is replaced (the link removed, not followed).
            save_step(&mut w, 7);
            assert!(sb.root.join("7").is_dir());
        } else {
            expect_err(
                w.save(
                    7,
                    Composite::new().json_value("s", json!(7)),
                    SaveOptions::default(),
                ),
                ErrorKind::AlreadyExists,
                &["step 7", "root/7"],
            );
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        w.close().unwrap();
    });
}

/// An item directory that is a symlink to a directory outside the root, recorded in the step's
/// `item_handlers`: not an item (never read), so `restore` gives the real items only and
/// `restore_items` of it is `NotFound`; deleting the step removes the link, not its target.
#[test]
fn item_dir_symlink_is_not_an_item() {
    case("item dir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        symlink(sb.outside.join("stepdir/state"), sb.root.join("1/evil")).unwrap();
        let meta = sb.root.join("1/_CHECKPOINT_METADATA");
        fs::write(
            &meta,
            step_metadata_json(&["state", "metrics", "evil"], "{}"),
        )
        .unwrap();
        let r = reader(&sb.root).unwrap();
        let restored = r.restore(Some(1)).unwrap();
        assert_eq!(restored.names(), vec!["metrics", "state"]);
        expect_err(
            r.restore_items(Some(1), &["evil"]),
            ErrorKind::NotFound,
            &["\"evil\"", "step 1"],
        );
        assert!(!r.item_metadata(1).unwrap().contains_key("evil"));
        let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
        w.delete(1).unwrap();
        assert!(!sb.root.join("1").exists());
        save_step(&mut w, 3);
        assert_eq!(w.all_steps(), vec![3]);
    });
}

/// Symlinks inside step and tmp directories pointing outside: deleting the step (delete,
/// retention, `apply_preservation`) or cleaning the tmp dir removes the links, never their
/// targets.
#[test]
fn links_inside_deleted_directories_are_removed_not_followed() {
    case("links inside steps and tmp dirs", |sb| {
        good_root(&sb.root, &[1, 2, 3]);
        fake_step(&sb.root.join("9.orbax-checkpoint-tmp"), &json!("dead save"));
        for dir in ["1/state", "2", "3/metrics", "9.orbax-checkpoint-tmp/state"] {
            let d = sb.root.join(dir);
            symlink(sb.outside.join("victim.txt"), d.join("file_link")).unwrap();
            symlink(sb.outside.join("nested"), d.join("dir_link")).unwrap();
        }
        let mut w = writer(&sb.root)
            .max_to_keep(2)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        assert!(!sb.root.join("9.orbax-checkpoint-tmp").exists(), "cleaned");
        w.delete(2).unwrap();
        save_step(&mut w, 4);
        save_step(&mut w, 5);
        assert_eq!(w.all_steps(), vec![4, 5]);
        w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
        assert!(w.all_steps().is_empty());
        assert_eq!(
            fs::read_dir(&sb.root)
                .unwrap()
                .filter(|e| !e
                    .as_ref()
                    .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock"))
                .count(),
            0,
            "only steps (and the live writer's lock file) were in the root"
        );
    });
}

/// Root entries with the names ckpt itself uses while deleting (`<step>.orbax-checkpoint-tmp-del`)
/// or saving, planted as symlinks to outside: deleting the step (now, or on the background
/// deleter) and cleanup remove the links, never their targets.
#[test]
fn own_tmp_names_as_symlinks_are_removed_not_followed() {
    for background in [false, true] {
        case(
            &format!("tmp-name symlinks, background delete {background}"),
            |sb| {
                good_root(&sb.root, &[1, 2, 3]);
                for name in [
                    "1.orbax-checkpoint-tmp-del",
                    "2.orbax-checkpoint-tmp-del",
                    "4.orbax-checkpoint-tmp",
                ] {
                    symlink(sb.outside.join("stepdir"), sb.root.join(name)).unwrap();
                }
                let mut w = CheckpointManager::builder(sb.root_str())
                    .enable_background_delete(background)
                    .max_to_keep(2)
                    .build()
                    .unwrap();
                w.delete(1).unwrap();
                save_step(&mut w, 4);
                save_step(&mut w, 5);
                assert_eq!(w.all_steps(), vec![4, 5]);
                w.close().unwrap();
                let mut left: Vec<String> = fs::read_dir(&sb.root)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                left.sort();
                assert_eq!(left, vec!["4", "5"]);
            },
        );
    }
}

/// `todelete_subdir` that is a symlink to a directory outside the root: deleting a step must not
/// move it out of the root (a write outside).
///
/// Bug: `remove_dir` (ckpt-manager/src/deleter.rs, the `todelete_subdir` branch) does
/// `create_dir(sub)` (a no-op: the link resolves to a directory), then `rename("1", "trash/1")`,
/// which rename(2) resolves through the link: step 1 (and later, by retention, step 2) lands in
/// `outside/trash/`.
#[test]
fn todelete_subdir_symlink_outside_is_not_written_through() {
    case("todelete_subdir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        symlink(sb.outside.join("trash"), sb.root.join("trash")).unwrap();
        let mut w = writer(&sb.root)
            .todelete_subdir("trash")
            .max_to_keep(1)
            .build()
            .unwrap();
        let _ = w.delete(1);
        save_step(&mut w, 3);
        assert!(!sb.outside.join("trash/1").exists());
        assert!(!sb.outside.join("trash/2").exists());
    });
}

/// The root's `metadata` entry is a symlink to a directory outside the root: writing the root
/// metadata must not write through it.
///
/// Bug: `Core::write_root_metadata_once` (ckpt-manager/src/shared.rs) stats
/// `metadata/_ROOT_METADATA` (absent) and `write_if_absent`s it; the store's `write` goes through
/// links, so the file is created as `outside/metadir/_ROOT_METADATA`.
#[test]
fn metadata_dir_symlink_outside_is_not_written_through() {
    case("metadata symlink", |sb| {
        good_root(&sb.root, &[1]);
        symlink(sb.outside.join("metadir"), sb.root.join("metadata")).unwrap();
        let _ = writer(&sb.root).root_metadata(loss(1.0)).build();
        assert!(!sb.outside.join("metadir/_ROOT_METADATA").exists());
    });
}

/// A step's `metrics` item directory is a symlink to an outside directory holding a `metrics`
/// file: issue 4 says nothing outside the root is ever read; listing must not take the step's
/// metrics (loss -1000, which would make it best) from outside.
///
/// Bug: `listing::read_metrics` (ckpt-manager/src/listing.rs) reads `1/metrics/metrics` with
/// `Store::read`, which follows links (documented in OpendalStore), so opening any manager reads
/// the outside file and ranks step 1 best by it.
#[test]
fn metrics_dir_symlink_outside_is_not_read() {
    case("metrics dir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        fs::remove_dir_all(sb.root.join("1/metrics")).unwrap();
        symlink(sb.outside.join("metrics_dir"), sb.root.join("1/metrics")).unwrap();
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .best_metric("loss", BestMode::Min)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![1, 2]);
        assert_eq!(r.checkpoints()[0].metrics, None, "{:?}", r.checkpoints());
        assert_eq!(r.best_step(), Some(2));
        assert_ne!(r.metrics(1).ok().flatten(), Some(loss(OUTSIDE_LOSS)));
    });
}

/// A step's `_CHECKPOINT_METADATA` that is a symlink to a file outside the root: its content
/// must not come from outside.
///
/// Bug: as above — `Store::read` follows links, so opening a manager reads the outside file (its
/// commit time becomes the step's time) and `step_metadata` returns it.
#[test]
fn metadata_file_symlink_outside_is_not_read() {
    case("_CHECKPOINT_METADATA symlink", |sb| {
        good_root(&sb.root, &[1]);
        let meta = sb.root.join("1/_CHECKPOINT_METADATA");
        fs::remove_file(&meta).unwrap();
        symlink(sb.outside.join("file.json"), &meta).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        let custom = r.step_metadata(1).map(|m| m.custom_metadata);
        assert!(
            !matches!(&custom, Ok(c) if c.get("from") == Some(&json!("outside"))),
            "{custom:?}"
        );
    });
}

/// As [`metadata_file_symlink_outside_is_not_read`], for a JSON item file: `restore` must not
/// return the outside file as the item.
///
/// Bug: `JsonHandler::restore` reads `1/state/metadata` through the store, which follows the
/// link: without a checksum manifest (a step written by Orbax) the outside file comes back as
/// the item; with one, the restore fails `Corrupt` only because the outside file's size differs,
/// and the outside file has been read either way.
#[test]
fn item_file_symlink_outside_is_not_read() {
    case("item file symlink", |sb| {
        good_root(&sb.root, &[1]);
        let item = sb.root.join("1/state/metadata");
        fs::remove_file(&item).unwrap();
        symlink(sb.outside.join("file.json"), &item).unwrap();
        drop_checksums(&sb.root.join("1"));
        let r = reader(&sb.root).unwrap();
        let restored = r.restore(Some(1));
        assert!(
            !matches!(&restored, Ok(x) if x.json_value("state").is_ok_and(|v| v["custom_metadata"]["from"] == json!("outside"))),
            "{restored:?}"
        );
    });
}
