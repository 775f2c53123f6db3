//! `verify_step` (moved here from ckpt-storage, issue 12): every file of a step checked against
//! its checksum manifest, on the memory store and a local directory. The steps are written as
//! the manager writes them (through a RecordingStore), without a manager, so that each kind of
//! damage can be made by hand.

use ckpt_manager::core::ErrorKind;
use ckpt_manager::storage::{
    AtomicRenameProtocol, ChecksumManifest, CommitFileProtocol, CommitProtocol, FileChecksum,
    FileStatus, LocalStore, OpendalStore, RecordingStore, Store, MANIFEST_FILE,
};
use ckpt_manager::{verify_step, StepProblem};
use std::sync::Arc;

fn memory() -> Arc<dyn Store> {
    Arc::new(OpendalStore::memory().expect("memory store"))
}

fn local() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("root")).expect("local store");
    (dir, Arc::new(store))
}

fn on_both(check: impl Fn(Arc<dyn Store>)) {
    check(memory());
    let (_dir, fs) = local();
    check(fs);
}

const TENSORS: &[u8] = b"tensor bytes: 0123456789abcdefghijklmnopqrstuvwxyz";

/// Saves step `3` the way the manager does: the item `state` written through a RecordingStore
/// into its working directory, committed, the manifest written at step level, the step
/// committed. Uses atomic rename where the store can rename, commit file elsewhere.
fn save_step(inner: &Arc<dyn Store>) -> ChecksumManifest {
    let proto: &dyn CommitProtocol = if inner.capabilities().rename {
        &AtomicRenameProtocol
    } else {
        &CommitFileProtocol
    };
    let step_working = proto.prepare(inner.as_ref(), "3").unwrap();
    let item_final = format!("{step_working}/state");
    let item_working = proto.prepare(inner.as_ref(), &item_final).unwrap();
    let rec = RecordingStore::new(inner.clone(), &item_working, "state");
    rec.write(&format!("{item_working}/tensors.safetensors"), TENSORS)
        .unwrap();
    rec.write(&format!("{item_working}/nested/meta.json"), b"{}")
        .unwrap();
    rec.write_if_absent(&format!("{item_working}/empty"), b"")
        .unwrap();
    // Outside the item: not recorded.
    rec.write(&format!("{step_working}/outside"), b"o").unwrap();
    // Committing the item through the recorder keeps its entries (keys move with it).
    proto.commit(&rec, &item_working, &item_final).unwrap();
    let manifest = rec.take_manifest();
    assert!(
        rec.manifest().is_empty(),
        "take_manifest empties the record"
    );
    manifest.write_to(inner.as_ref(), &step_working).unwrap();
    inner
        .write(&format!("{step_working}/_CHECKPOINT_METADATA"), b"{}")
        .unwrap();
    proto.commit(inner.as_ref(), &step_working, "3").unwrap();
    manifest
}

/// One kind of damage, applied through the inner store.
fn damage(inner: &dyn Store, path: &str, how: &str) {
    let mut data = inner.read(path).unwrap();
    match how {
        "flipped bit" => data[7] ^= 0x10,
        "truncated" => data.truncate(data.len() - 9),
        "appended byte" => data.push(b'!'),
        other => panic!("{other}"),
    }
    inner.write(path, &data).unwrap();
}

/// A step saved as the manager saves it verifies: every recorded file ok, the file written
/// outside the item unchecked.
#[test]
fn a_recorded_step_verifies() {
    on_both(|inner| {
        save_step(&inner);
        let report = verify_step(inner.as_ref(), "3").unwrap();
        assert!(report.has_checksums);
        assert!(report.is_ok(), "{report}");
        report.check().unwrap();
        let files: Vec<(&str, FileStatus)> =
            report.files.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        assert_eq!(
            files,
            [
                ("outside", FileStatus::Unchecked),
                ("state/commit_success.txt", FileStatus::Ok),
                ("state/empty", FileStatus::Ok),
                ("state/nested/meta.json", FileStatus::Ok),
                ("state/tensors.safetensors", FileStatus::Ok),
            ]
        );
    });
}

/// A damaged file: a report naming it with what is wrong, and check() as a Corrupt error.
#[test]
fn damage_is_reported_naming_the_file() {
    for how in ["flipped bit", "truncated", "appended byte"] {
        on_both(|inner| {
            save_step(&inner);
            let path = "3/state/tensors.safetensors";
            damage(inner.as_ref(), path, how);
            let location = inner.location(path);
            let expected_msg = match how {
                "flipped bit" => "wrong crc32c".to_string(),
                "truncated" => format!(
                    "truncated: {} of {} bytes",
                    TENSORS.len() - 9,
                    TENSORS.len()
                ),
                _ => format!(
                    "wrong size: {} bytes, expected {}",
                    TENSORS.len() + 1,
                    TENSORS.len()
                ),
            };
            // verify_step: a report naming the file, and check() as a Corrupt error.
            let report = verify_step(inner.as_ref(), "3").unwrap();
            assert!(!report.is_ok(), "{how}");
            let bad: Vec<_> = report.bad_files().collect();
            assert_eq!(bad.len(), 1, "{how}: {report}");
            assert_eq!(bad[0].0, "state/tensors.safetensors");
            match (how, bad[0].1) {
                ("flipped bit", FileStatus::WrongCrc { expected, actual }) => {
                    assert_eq!(expected, FileChecksum::of(TENSORS).crc32c);
                    assert_ne!(actual, expected);
                }
                ("truncated", FileStatus::WrongSize { expected, actual }) => {
                    assert_eq!(
                        (expected, actual),
                        (TENSORS.len() as u64, TENSORS.len() as u64 - 9)
                    )
                }
                ("appended byte", FileStatus::WrongSize { expected, actual }) => {
                    assert_eq!(
                        (expected, actual),
                        (TENSORS.len() as u64, TENSORS.len() as u64 + 1)
                    )
                }
                (h, s) => panic!("{h}: unexpected status {s:?}"),
            }
            let text = report.to_string();
            assert!(
                text.contains(&location) && text.contains(&expected_msg),
                "{text}"
            );
            let e = report.check().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt);
            assert!(e.message().contains(&location), "{e}");
            assert!(e.message().contains(&expected_msg), "{e}");
        });
    }
}

#[test]
fn verify_step_reports_missing_unchecked_and_several_bad_files() {
    on_both(|inner| {
        save_step(&inner);
        inner.delete("3/state/nested/meta.json").unwrap();
        damage(inner.as_ref(), "3/state/tensors.safetensors", "flipped bit");
        inner.write("3/state/extra.bin", b"e").unwrap();
        let report = verify_step(inner.as_ref(), "3").unwrap();
        let files: Vec<(&str, FileStatus)> =
            report.files.iter().map(|(k, s)| (k.as_str(), *s)).collect();
        assert_eq!(files.len(), 6, "{report}");
        assert!(files.contains(&("state/nested/meta.json", FileStatus::Missing)));
        // Inside an item every file is recorded: one that is not is not vouched for.
        assert!(files.contains(&("state/extra.bin", FileStatus::Unrecorded)));
        assert!(files.contains(&("state/empty", FileStatus::Ok)));
        assert!(files.contains(&("outside", FileStatus::Unchecked)));
        // The step's commit_success.txt, _CHECKPOINT_METADATA and the manifest are not listed.
        assert!(!files.iter().any(|(k, _)| *k == "commit_success.txt"
            || *k == "_CHECKPOINT_METADATA"
            || *k == MANIFEST_FILE));
        let e = report.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.message().starts_with("3 files of"), "{e}");
        assert!(
            e.message()
                .contains("extra.bin (not in the checksum manifest"),
            "{e}"
        );
        assert!(e.message().contains("meta.json (missing)"), "{e}");
        assert!(
            e.message().contains("tensors.safetensors (wrong crc32c"),
            "{e}"
        );
    });
}

#[test]
fn symlinked_file_is_not_followed() {
    let (dir, inner) = local();
    let m = save_step(&inner);
    let outside = dir.path().join("secret");
    std::fs::write(&outside, TENSORS).unwrap();
    let target = dir.path().join("root/3/state/tensors.safetensors");
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&outside, &target).unwrap();
    let report = verify_step(inner.as_ref(), "3").unwrap();
    assert!(
        report.files.contains(&(
            "state/tensors.safetensors".to_string(),
            FileStatus::NotAFile
        )),
        "{report}"
    );
    assert!(!report.is_ok());
    assert_eq!(m.len(), 4);
}

#[test]
fn verify_step_without_manifest_or_step() {
    on_both(|inner| {
        inner.write("5/state/x", b"x").unwrap();
        let report = verify_step(inner.as_ref(), "5").unwrap();
        assert!(!report.has_checksums);
        assert!(report.is_ok());
        assert!(report.files.is_empty());
        assert!(
            report.to_string().ends_with("no checksums recorded"),
            "{report}"
        );
        report.check().unwrap();
        assert_eq!(
            verify_step(inner.as_ref(), "6").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            verify_step(inner.as_ref(), "../x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    });
}

#[test]
fn junk_manifest_is_corrupt_naming_it() {
    on_both(|inner| {
        inner.write("4/state/x", b"x").unwrap();
        inner
            .write(
                &format!("4/{MANIFEST_FILE}"),
                b"{\"algorithm\": \"crc32c\", \"fi",
            )
            .unwrap();
        let e = verify_step(inner.as_ref(), "4").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        let loc = inner.location(&format!("4/{MANIFEST_FILE}"));
        assert_eq!(e.path(), Some(loc.as_str()));
        assert!(e.to_string().contains(&loc), "{e}");
    });
}

#[test]
fn an_emptied_manifest_leaves_every_item_file_unrecorded_and_the_step_bad() {
    on_both(|inner| {
        save_step(&inner);
        ChecksumManifest::new()
            .write_to(inner.as_ref(), "3")
            .unwrap();
        let report = verify_step(inner.as_ref(), "3").unwrap();
        assert!(!report.is_ok(), "{report}");
        assert_eq!(
            report.problems,
            vec![StepProblem::UnrecordedItem("state".into())],
            "{report}"
        );
        for (key, status) in &report.files {
            let expected = if key.starts_with("state/") {
                FileStatus::Unrecorded
            } else {
                FileStatus::Unchecked
            };
            assert_eq!(*status, expected, "{key}: {report}");
        }
        let e = report.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(
            e.message().contains("item \"state\" has no file recorded"),
            "{e}"
        );
    });
}

#[test]
fn a_stray_item_directory_or_a_step_without_items_is_bad() {
    on_both(|inner| {
        save_step(&inner);
        // An item directory with no recorded file (a file system keeps empty directories; a
        // store without directories has one only with a file in it).
        inner.create_dir("3/stray").unwrap();
        if inner.stat("3/stray").unwrap().is_none() {
            inner.write("3/stray/x", b"x").unwrap();
        }
        let report = verify_step(inner.as_ref(), "3").unwrap();
        assert!(
            report
                .problems
                .contains(&StepProblem::UnrecordedItem("stray".into())),
            "{report}"
        );
        assert!(!report.is_ok());
        assert!(
            report
                .to_string()
                .contains("\"stray\" has no file recorded"),
            "{report}"
        );

        // Every item gone: nothing to restore.
        inner.delete_prefix("3/stray").unwrap();
        inner.delete_prefix("3/state").unwrap();
        let report = verify_step(inner.as_ref(), "3").unwrap();
        assert!(report.problems.contains(&StepProblem::NoItems), "{report}");
        assert!(report.check().is_err());
    });
}

#[test]
fn an_item_named_in_the_step_metadata_but_gone_is_bad() {
    on_both(|inner| {
        save_step(&inner);
        inner
            .write(
                "3/_CHECKPOINT_METADATA",
                br#"{"item_handlers": {"state": "ckpt.tensors", "opt": "ckpt.tensors"}}"#,
            )
            .unwrap();
        let report = verify_step(inner.as_ref(), "3").unwrap();
        assert_eq!(
            report.problems,
            vec![StepProblem::MissingItem("opt".into())],
            "{report}"
        );
        assert!(!report.is_ok());
    });
}
