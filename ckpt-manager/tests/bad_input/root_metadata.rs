//! Bad input, 2: root metadata.

use super::*;

/// Broken `metadata/_ROOT_METADATA`: opening (read-only or for writing, with root metadata given)
/// works and lists the steps; `metadata()` is `Corrupt` naming the file; the broken file is never
/// overwritten (spec §1.6: written once, never overwritten).
#[test]
fn broken_root_metadata_is_corrupt_and_never_overwritten() {
    let rows: &[(&str, (&[u8], &str))] = &[
        (
            "truncated",
            (
                b"{\"internal_metadata\": {}, \"custom_metad",
                "root metadata",
            ),
        ),
        ("not JSON", (b"<xml/>", "root metadata")),
        ("empty file", (b"", "root metadata")),
        ("binary junk", (b"\x00\x9f\x92\x96", "root metadata")),
        ("top level is an array", (b"[]", "not a JSON object")),
        ("top level is NaN", (b"NaN", "not a JSON object")),
        (
            "custom_metadata a list",
            (b"{\"custom_metadata\": [1]}", "custom_metadata"),
        ),
        (
            "internal_metadata a string",
            (b"{\"internal_metadata\": \"x\"}", "internal_metadata"),
        ),
        (
            "unknown key beside non-empty custom_metadata",
            (
                b"{\"version\": 2, \"custom_metadata\": {\"a\": 1}}",
                "version",
            ),
        ),
    ];
    table(rows, |sb, (bytes, needle)| {
        good_root(&sb.root, &[1]);
        let file = sb.root.join("metadata/_ROOT_METADATA");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, bytes).unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        expect_err(
            m.metadata(),
            ErrorKind::Corrupt,
            &["metadata/_ROOT_METADATA", needle],
        );
        let w = writer(&sb.root).root_metadata(loss(1.0)).build().unwrap();
        expect_err(w.metadata(), ErrorKind::Corrupt, &["_ROOT_METADATA"]);
        assert_eq!(&fs::read(&file).unwrap(), bytes, "never overwritten");
    });
}

#[test]
fn root_metadata_edge_cases() {
    case("legacy metadata/metadata broken", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir_all(sb.root.join("metadata")).unwrap();
        fs::write(sb.root.join("metadata/metadata"), b"{\"blah\": ").unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(m.metadata(), ErrorKind::Corrupt, &["metadata/metadata"]);
    });
    case(
        "unknown keys with empty custom_metadata move into it",
        |sb| {
            good_root(&sb.root, &[1]);
            fs::create_dir_all(sb.root.join("metadata")).unwrap();
            fs::write(
                sb.root.join("metadata/_ROOT_METADATA"),
                b"{\"internal_metadata\": {}, \"lang\": \"en\"}",
            )
            .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(
                Value::Object(m.metadata().unwrap().custom_metadata),
                json!({"lang": "en"})
            );
        },
    );
    case("empty metadata directory", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir_all(sb.root.join("metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        // Spec §1.6 [verified]: an empty metadata/ dir makes metadata() raise.
        expect_err(m.metadata(), ErrorKind::NotFound, &["metadata"]);
    });
    case("metadata is a file", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("metadata"), b"not a directory").unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        // Orbax raises here too (`metadata` exists, its file cannot be read): a clear error
        // naming the path and the cause.
        expect_err(
            m.metadata(),
            ErrorKind::Storage,
            &["metadata/_ROOT_METADATA", "not a directory"],
        );
    });
}

/// A file named `metadata` in the root, and a writer given root metadata: the metadata cannot be
/// written, and the caller must be told (Orbax: `mkdir(exist_ok=True)` raises
/// `FileExistsError`); the file stays as it is.
///
/// Bug: `Core::write_root_metadata_once` (ckpt-manager/src/shared.rs) maps every
/// `AlreadyExists` from `write_if_absent("metadata/_ROOT_METADATA")` to "someone else wrote it";
/// here the store's `AlreadyExists` comes from creating the parent directory over the file, so
/// `build()` returns `Ok` and the root metadata is silently dropped.
#[test]
fn root_metadata_blocked_by_a_file_is_an_error() {
    case("metadata is a file, writer with root metadata", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("metadata"), b"not a directory").unwrap();
        let r = writer(&sb.root).root_metadata(loss(1.0)).build();
        let e = r.err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("metadata")),
            "expected an error naming `metadata`, got {e:?}"
        );
        assert_eq!(
            fs::read(sb.root.join("metadata")).unwrap(),
            b"not a directory"
        );
    });
}
