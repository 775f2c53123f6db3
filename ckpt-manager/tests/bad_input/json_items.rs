//! Bad input, 4: JSON item files.

use super::*;

/// A broken JSON item file: restore is `Corrupt` naming the file and the step — caught by the
/// checksum manifest when the step has one, by the JSON parser when it has none (a step written
/// by Orbax, or by ckpt before checksums); the other items still restore one by one.
#[test]
fn broken_json_item_file_is_corrupt_naming_it() {
    let rows: &[(&str, (&[u8], &str))] = &[
        ("truncated", (b"{\"a\": [1, 2", "invalid JSON")),
        ("not JSON", (b"a = 1", "invalid JSON")),
        ("binary junk", (b"\xff\x00\xfe", "not UTF-8")),
        ("empty file", (b"", "invalid JSON")),
        ("two documents", (b"{} {}", "invalid JSON")),
    ];
    table(rows, |sb, (bytes, parse_error)| {
        let mut m = writer(&sb.root).build().unwrap();
        m.save(
            1,
            Composite::new()
                .json_value("state", json!({"a": 1}))
                .json_value("other", json!("fine")),
            SaveOptions::default(),
        )
        .unwrap();
        fs::write(sb.root.join("1/state/metadata"), bytes).unwrap();
        for manifest in [true, false] {
            if !manifest {
                drop_checksums(&sb.root.join("1"));
            }
            let why = if manifest {
                "does not match its checksum"
            } else {
                parse_error
            };
            expect_err(
                m.restore(Some(1)),
                ErrorKind::Corrupt,
                &["1/state/metadata", "step 1", why],
            );
            expect_err(
                m.restore(None),
                ErrorKind::Corrupt,
                &["1/state/metadata", why],
            );
            let r = m.restore_items(Some(1), &["other"]).unwrap();
            assert_eq!(r.json_value("other").unwrap(), &json!("fine"));
            assert_eq!(m.all_steps(), vec![1], "a failed restore changes nothing");
        }
    });
}

#[test]
fn json_item_file_missing_or_replaced() {
    case("item file missing", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_file(sb.root.join("1/state/metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/metadata", "step 1", "not found"],
        );
    });
    case("item file is a directory", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_file(sb.root.join("1/state/metadata")).unwrap();
        fs::create_dir(sb.root.join("1/state/metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/metadata", "step 1"],
        );
    });
    case("item file with NaN and Infinity", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(
            sb.root.join("1/state/metadata"),
            b"{\"a\": NaN, \"b\": [Infinity, -Infinity], \"c\": \"NaN\"}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Corrupt,
            &["1/state/metadata", "does not match its checksum"],
        );
        // As Python's json.dumps writes it (no manifest): read leniently.
        drop_checksums(&sb.root.join("1"));
        let r = m.restore(Some(1)).unwrap();
        assert_eq!(
            r.json_value("state").unwrap(),
            &json!({"a": null, "b": [null, null], "c": "NaN"})
        );
    });
}
