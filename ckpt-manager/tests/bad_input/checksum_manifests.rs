//! Bad input, 6b: checksum manifests.

use super::*;

/// A broken `_CKPT_CHECKSUMS` (ckpt's own file; Orbax ignores it): restore is `Corrupt` (or
/// `Unsupported` for an algorithm this ckpt does not know) naming the manifest and the step,
/// before any item is read — a manifest key that points outside the step is refused, never
/// followed; listing is unaffected, and with `verify_checksums(false)` the step restores.
#[test]
fn broken_checksum_manifest_is_corrupt_naming_it() {
    type Row<'a> = (&'a [u8], ErrorKind, &'a str);
    let rows: &[(&str, Row)] = &[
        ("truncated", (b"{\"algorithm\": \"crc32c\", \"fi", ErrorKind::Corrupt, "not valid JSON")),
        ("not JSON", (b"crc32c 0a1b2c3d", ErrorKind::Corrupt, "not valid JSON")),
        ("a list", (b"[]", ErrorKind::Corrupt, "not a JSON object")),
        ("no files", (b"{\"algorithm\": \"crc32c\"}", ErrorKind::Corrupt, "files")),
        ("unknown algorithm", (b"{\"algorithm\": \"md5\", \"files\": {}}", ErrorKind::Unsupported, "md5")),
        (
            "key escaping the step",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"../../outside/victim.txt\": {\"size\": 1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "../../outside/victim.txt",
            ),
        ),
        (
            "absolute key",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"/etc/passwd\": {\"size\": 1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "/etc/passwd",
            ),
        ),
        (
            "negative size",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"state/metadata\": {\"size\": -1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "size",
            ),
        ),
        (
            "crc not hex",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"state/metadata\": {\"size\": 11, \"crc32c\": \"zzzzzzzz\"}}}",
                ErrorKind::Corrupt,
                "crc32c",
            ),
        ),
    ];
    table(rows, |sb, (bytes, kind, needle)| {
        good_root(&sb.root, &[1]);
        fs::write(
            sb.root.join("1").join(ckpt_manager::storage::MANIFEST_FILE),
            bytes,
        )
        .unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        assert_eq!(r.metrics(1).unwrap(), Some(loss(0.1)));
        expect_err(
            r.restore(Some(1)),
            *kind,
            &["1/_CKPT_CHECKSUMS", "step 1", needle],
        );
        let unchecked = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .verify_checksums(false)
            .build()
            .unwrap();
        assert_eq!(
            unchecked
                .restore(Some(1))
                .unwrap()
                .json_value("state")
                .unwrap(),
            &json!({"step": 1})
        );
    });
}
