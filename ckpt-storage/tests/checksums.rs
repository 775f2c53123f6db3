//! Checksums: RecordingStore, VerifyingStore and ChecksumManifest on real stores (the check of
//! a whole step, `ckpt_manager::verify_step`, is tested in ckpt-manager/tests/verify_step.rs).

use ckpt_core::ErrorKind;
use ckpt_storage::testkit;
use ckpt_storage::{
    AtomicRenameProtocol, ChecksumManifest, CommitFileProtocol, CommitProtocol, FileChecksum,
    LocalStore, OpendalStore, RecordingStore, Store, VerifyingStore, MANIFEST_FILE,
};
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

#[test]
fn recording_store_records_item_files_under_the_item_name() {
    on_both(|inner| {
        let m = save_step(&inner);
        let keys: Vec<&str> = m.files.keys().map(String::as_str).collect();
        // The item's commit_success.txt was written through the recorder too (by the commit).
        assert_eq!(
            keys,
            [
                "state/commit_success.txt",
                "state/empty",
                "state/nested/meta.json",
                "state/tensors.safetensors"
            ]
        );
        assert_eq!(
            m.files["state/tensors.safetensors"],
            FileChecksum::of(TENSORS)
        );
        assert_eq!(m.files["state/empty"], FileChecksum { size: 0, crc32c: 0 });
    });
}

#[test]
fn recording_store_follows_overwrites_deletes_and_renames() {
    let (_dir, inner) = local();
    let rec = RecordingStore::new(inner.clone(), "w", "item");
    rec.write("w/a", b"first").unwrap();
    rec.write("w/a", b"second").unwrap();
    rec.write("w/d/x", b"x").unwrap();
    rec.write("w/d/y", b"y").unwrap();
    rec.write("w/gone", b"g").unwrap();
    rec.write("wx/not-below", b"n").unwrap();
    assert!(rec.write_if_absent("w/a", b"loser").is_err());
    rec.delete("w/gone").unwrap();
    rec.rename("w/d", "w/e").unwrap();
    rec.write("w/moving", b"m").unwrap();
    rec.rename("w/moving", "elsewhere").unwrap();
    let m = rec.manifest();
    let keys: Vec<&str> = m.files.keys().map(String::as_str).collect();
    assert_eq!(keys, ["item/a", "item/e/x", "item/e/y"]);
    assert_eq!(m.files["item/a"], FileChecksum::of(b"second"));
    rec.delete_prefix("w/e").unwrap();
    assert_eq!(rec.manifest().len(), 1);
    rec.delete_prefix("w").unwrap();
    assert!(rec.manifest().is_empty());
}

#[test]
fn recording_everything_through_the_conformance_suite_verifies() {
    // Every file the suite leaves behind was written through the recorder, which follows every
    // overwrite, delete and rename the suite does: the whole root verifies, nothing unchecked.
    on_both(|inner| {
        let rec = RecordingStore::new(inner.clone(), "", "");
        testkit::run_all(&rec);
        let m = rec.take_manifest();
        m.write_to(inner.as_ref(), "").unwrap();
        // Every recorded file is there and matches, and every file there (but the manifest) is
        // recorded: what `ckpt_manager::verify_step` of the root reports as ok with nothing
        // unchecked (this test used it before the walker moved to ckpt-manager).
        let v = VerifyingStore::load(inner.clone(), "").unwrap();
        assert_eq!(v.manifest(), &m);
        for key in m.files.keys() {
            v.read(key).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        let unrecorded: Vec<String> = inner
            .list_recursive("")
            .unwrap()
            .into_iter()
            .filter(|k| k != MANIFEST_FILE && !m.files.contains_key(k))
            .collect();
        assert!(unrecorded.is_empty(), "{unrecorded:?}");
    });
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

#[test]
fn damage_is_corrupt_naming_the_file() {
    for how in ["flipped bit", "truncated", "appended byte"] {
        on_both(|inner| {
            let manifest = save_step(&inner);
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

            // VerifyingStore: read and read_range.
            let v = VerifyingStore::new(inner.clone(), "3", manifest.clone());
            let e = v.read(path).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{how}: {e}");
            assert!(e.message().contains(&location), "{how}: {e}");
            assert!(e.message().contains(&expected_msg), "{how}: {e}");
            assert_eq!(e.path(), Some(location.as_str()));
            let e = v.read_range(path, 0..4).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{how}: {e}");
            assert!(e.message().contains(&location), "{how}: {e}");
            // Undamaged files still read.
            assert_eq!(v.read("3/state/nested/meta.json").unwrap(), b"{}");
            // Loaded from the step's own manifest: the same.
            let loaded = VerifyingStore::load(inner.clone(), "3").unwrap();
            assert_eq!(loaded.manifest(), &manifest);
            assert_eq!(loaded.read(path).unwrap_err().kind(), ErrorKind::Corrupt);
        });
    }
}

#[test]
fn verifying_store_range_reads_and_pass_through() {
    on_both(|inner| {
        let manifest = save_step(&inner);
        let v = VerifyingStore::new(inner.clone(), "3", manifest);
        let p = "3/state/tensors.safetensors";
        assert_eq!(v.read(p).unwrap(), TENSORS);
        assert_eq!(v.read_range(p, 2..6).unwrap(), &TENSORS[2..6]);
        assert_eq!(v.read_range(p, 0..0).unwrap(), b"");
        let len = TENSORS.len() as u64;
        assert_eq!(
            v.read_range(p, 1..len + 1).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 4..2;
        assert_eq!(
            v.read_range(p, reversed).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        // Not in the manifest: unverified, even when "damaged".
        inner.write("3/outside", b"changed").unwrap();
        assert_eq!(v.read("3/outside").unwrap(), b"changed");
        // Missing recorded file: NotFound, as the store says.
        inner.delete(p).unwrap();
        assert_eq!(v.read(p).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            v.read_range(p, 0..1).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn verifying_store_without_manifest_checks_nothing() {
    on_both(|inner| {
        inner.write("5/state/x", b"x").unwrap();
        // VerifyingStore::load without a manifest checks nothing.
        let v = VerifyingStore::load(inner.clone(), "5").unwrap();
        assert!(v.manifest().is_empty());
        assert_eq!(v.read("5/state/x").unwrap(), b"x");
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
        let e = VerifyingStore::load(inner.clone(), "4").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    });
}

#[test]
fn manifest_json_round_trips() {
    let mut m = ChecksumManifest::new();
    m.insert("state/tensors.safetensors", FileChecksum::of(TENSORS));
    m.insert(
        "a b/ünï \"q\".bin",
        FileChecksum {
            size: u64::MAX,
            crc32c: u32::MAX,
        },
    );
    m.insert("z", FileChecksum { size: 0, crc32c: 0 });
    let bytes = m.to_json_bytes();
    assert_eq!(ChecksumManifest::from_json_bytes(&bytes).unwrap(), m);
    let empty = ChecksumManifest::new();
    assert_eq!(
        ChecksumManifest::from_json_bytes(&empty.to_json_bytes()).unwrap(),
        empty
    );
    // The documented format, by hand, with an unknown key and uppercase hex.
    let text = br#"{"algorithm": "crc32c", "version": 2, "files": {"state/tensors.safetensors": {"size": 123, "crc32c": "0A1B2C3D", "note": 1}}}"#;
    let parsed = ChecksumManifest::from_json_bytes(text).unwrap();
    assert_eq!(
        parsed.get("state/tensors.safetensors"),
        Some(&FileChecksum {
            size: 123,
            crc32c: 0x0a1b_2c3d
        })
    );
    assert!(String::from_utf8_lossy(&parsed.to_json_bytes()).contains("\"crc32c\": \"0a1b2c3d\""));
}

#[test]
fn junk_manifests_are_corrupt() {
    let junk: &[&[u8]] = &[
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"null",
        b"{}",
        br#"{"algorithm": 3, "files": {}}"#,
        br#"{"algorithm": "crc32c"}"#,
        br#"{"algorithm": "crc32c", "files": []}"#,
        br#"{"algorithm": "crc32c", "files": {"a": 1}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": -1, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1.5, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": "1", "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": 12}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": "abc"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": "+0000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": "0000000g"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": "000000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"": {"size": 1, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"../x": {"size": 1, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"/etc/passwd": {"size": 1, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a//b": {"size": 1, "crc32c": "00000000"}}}"#,
        br#"{"algorithm": "crc32c", "files": {"a": {"size": 1, "crc32c": "00000000"}}"#,
    ];
    for j in junk {
        match ChecksumManifest::from_json_bytes(j) {
            Ok(m) => panic!("{:?} parsed as {m:?}", String::from_utf8_lossy(j)),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Corrupt,
                "{:?}: {e}",
                String::from_utf8_lossy(j)
            ),
        }
    }
    let other = br#"{"algorithm": "xxh3", "files": {}}"#;
    assert_eq!(
        ChecksumManifest::from_json_bytes(other).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[test]
fn merge_unions_and_later_wins() {
    let mut a = ChecksumManifest::new();
    a.insert("state/x", FileChecksum::of(b"old"));
    a.insert("state/y", FileChecksum::of(b"y"));
    let mut b = ChecksumManifest::new();
    b.insert("state/x", FileChecksum::of(b"new"));
    b.insert("params/p", FileChecksum::of(b"p"));
    a.merge(b);
    assert_eq!(a.len(), 3);
    assert_eq!(a.get("state/x"), Some(&FileChecksum::of(b"new")));
    assert!(a.get("params/p").is_some() && a.get("state/y").is_some());
}
