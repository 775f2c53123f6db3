//! Crafted corruptions of Orbax array items (OCDBT manifest, B+tree node, value references, data
//! files, zarr v2/v3 metadata and chunks, `_METADATA`): each is a clear error of the right kind
//! naming the file or key — never a panic, a hang, wrong values or an allocation sized from
//! untrusted input.

mod common;

use ckpt_core::ErrorKind;
use ckpt_handlers::ocdbt::{encode_envelope, BTREE_NODE_MAGIC, MANIFEST_MAGIC};
use ckpt_handlers::orbax_array::{restore_tree, save_item, tree_metadata};
use ckpt_handlers::{ArrayLayout, ArrayOptions, ItemDir, PyTree, SaveItem, Tensor};
use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn tree() -> PyTree {
    let big: Vec<f32> = (0..4096).map(|i| i as f32).collect();
    PyTree::dict()
        .with("w", Tensor::from_slice([64, 64], &big).unwrap())
        .with("b", Tensor::from_slice([3], &[1i32, 2, 3]).unwrap())
        .with("n", PyTree::Scalar(Tensor::scalar(5i64)))
}

/// A fresh item of `layout` in a temp dir; returns (guard, item dir path).
fn item(layout: ArrayLayout) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ckpt_storage::LocalStore::open(tmp.path()).unwrap();
    let dir = ItemDir::new(&store, "item");
    let options = ArrayOptions {
        layout,
        chunk_byte_size: Some(4096),
    };
    save_item(&dir, &SaveItem::PyTree(Cow::Owned(tree())), &options).unwrap();
    let p = tmp.path().join("item");
    (tmp, p)
}

/// The data file holding the B+tree node (ckpt writes it alone in its own file; the other data
/// files hold chunk values), found by its magic number so the choice never depends on listing
/// order.
fn data_file(item: &Path) -> PathBuf {
    let mut files: Vec<PathBuf> = fs::read_dir(item.join("d"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .find(|f| {
            fs::read(f)
                .unwrap()
                .starts_with(&BTREE_NODE_MAGIC.to_be_bytes())
        })
        .expect("a node file")
}

/// Restores the item and its metadata; both must fail with `kind`, the restore's message
/// containing `needle`.
fn expect(label: &str, root: &Path, kind: ErrorKind, needle: &str) {
    let store = ckpt_storage::LocalStore::open(root.parent().unwrap()).unwrap();
    let dir = ItemDir::new(&store, "item");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| restore_tree(&dir, None)));
    let e = match r {
        Err(_) => panic!("{label}: restore panicked"),
        Ok(Ok(t)) => panic!("{label}: restore succeeded with {t:?}"),
        Ok(Err(e)) => e,
    };
    assert_eq!(e.kind(), kind, "{label}: {e}");
    assert!(
        e.to_string().contains(needle),
        "{label}: {e} does not name {needle:?}"
    );
    let m = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tree_metadata(&dir)));
    assert!(m.is_ok(), "{label}: metadata panicked");
}

/// A manifest body: Orbax's config, a table of `files`, one version of root
/// (`file`, `offset`, `length`, `height`, generation `generation`), then `tail`.
fn manifest_body(
    files: &[&str],
    file: u64,
    offset: u64,
    length: u64,
    generation: u64,
    kind: u8,
) -> Vec<u8> {
    let mut m = vec![7u8; 16];
    m.push(kind);
    varint(&mut m, 1024);
    varint(&mut m, 100_000_000);
    m.push(4);
    varint(&mut m, 0); // no compression
    varint(&mut m, files.len() as u64);
    for _ in 1..files.len() {
        varint(&mut m, 0);
    }
    for f in files {
        varint(&mut m, f.len() as u64);
    }
    for _ in files {
        varint(&mut m, 0);
    }
    for f in files {
        m.extend_from_slice(f.as_bytes());
    }
    varint(&mut m, 1);
    varint(&mut m, generation);
    m.push(0);
    varint(&mut m, file);
    varint(&mut m, offset);
    varint(&mut m, length);
    varint(&mut m, 1);
    varint(&mut m, length);
    varint(&mut m, 0);
    m.extend_from_slice(&0u64.to_le_bytes());
    varint(&mut m, 0);
    m
}

/// A leaf node body holding `keys` (each with an inline value `v`), in the given order.
fn leaf_body(keys: &[&str], num_entries: u64, height: u8) -> Vec<u8> {
    let mut b = vec![height];
    varint(&mut b, 0); // empty table
    varint(&mut b, num_entries);
    for _ in 1..keys.len() {
        varint(&mut b, 0);
    }
    for k in keys {
        varint(&mut b, k.len() as u64);
    }
    for k in keys {
        b.extend_from_slice(k.as_bytes());
    }
    for _ in keys {
        varint(&mut b, 1);
    }
    b.extend(std::iter::repeat_n(0u8, keys.len())); // all inline
    b.extend(std::iter::repeat_n(b'v', keys.len()));
    b
}

/// Replaces the item's database by `node` in `d/x` and a manifest pointing at all of it.
fn replace_db(item: &Path, node: &[u8]) {
    fs::remove_dir_all(item.join("d")).unwrap();
    fs::create_dir_all(item.join("d")).unwrap();
    fs::write(item.join("d/x"), node).unwrap();
    let m = manifest_body(&["d/x"], 0, 0, node.len() as u64, 1, 0);
    fs::write(
        item.join("manifest.ocdbt"),
        encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
    )
    .unwrap();
}

#[test]
fn ocdbt_manifest_corruptions() {
    type Mutate = fn(&Path);
    let cases: Vec<(&str, Mutate, ErrorKind, &str)> = vec![
        (
            "manifest truncated",
            |p| {
                let b = fs::read(p.join("manifest.ocdbt")).unwrap();
                fs::write(p.join("manifest.ocdbt"), &b[..10]).unwrap();
            },
            ErrorKind::Corrupt,
            "manifest.ocdbt",
        ),
        (
            "manifest magic",
            |p| {
                let mut b = fs::read(p.join("manifest.ocdbt")).unwrap();
                b[0] ^= 0xff;
                fs::write(p.join("manifest.ocdbt"), b).unwrap();
            },
            ErrorKind::Corrupt,
            "magic",
        ),
        (
            "manifest crc",
            |p| {
                let mut b = fs::read(p.join("manifest.ocdbt")).unwrap();
                let n = b.len();
                b[n - 1] ^= 1;
                fs::write(p.join("manifest.ocdbt"), b).unwrap();
            },
            ErrorKind::Corrupt,
            "crc32c",
        ),
        (
            "manifest with trailing bytes",
            |p| {
                let mut b = fs::read(p.join("manifest.ocdbt")).unwrap();
                b.extend_from_slice(b"xx");
                fs::write(p.join("manifest.ocdbt"), b).unwrap();
            },
            ErrorKind::Corrupt,
            "header says",
        ),
        (
            "manifest zstd body garbage",
            |p| {
                let mut b = Vec::new();
                b.extend_from_slice(&MANIFEST_MAGIC.to_be_bytes());
                b.extend_from_slice(&30u64.to_le_bytes());
                b.extend_from_slice(&[0, 1]);
                b.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd, 9, 9, 9, 9, 9, 9, 9, 9]);
                let crc = crc32c::crc32c(&b);
                b.extend_from_slice(&crc.to_le_bytes());
                fs::write(p.join("manifest.ocdbt"), b).unwrap();
            },
            ErrorKind::Corrupt,
            "zstd",
        ),
        (
            "manifest generation 0",
            |p| {
                let m = manifest_body(&["d/x"], 0, 0, 10, 0, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Corrupt,
            "generation",
        ),
        (
            "manifest root in a data file not in its table",
            |p| {
                let m = manifest_body(&["d/x"], 5, 0, 10, 1, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Corrupt,
            "data file 5",
        ),
        (
            "manifest root outside its file",
            |p| {
                let f = data_file(p);
                let name = format!("d/{}", f.file_name().unwrap().to_str().unwrap());
                let m = manifest_body(&[&name], 0, 1 << 40, 100, 1, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Corrupt,
            "outside the file",
        ),
        (
            "manifest offset + length overflow",
            |p| {
                let m = manifest_body(&["d/x"], 0, u64::MAX - 5, 100, 1, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Corrupt,
            "overflows",
        ),
        (
            "numbered manifest",
            |p| {
                let mut m = vec![7u8; 16];
                m.push(1);
                varint(&mut m, 1024);
                varint(&mut m, 100);
                m.push(4);
                varint(&mut m, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Unsupported,
            "numbered",
        ),
        (
            "manifest table path escapes the item",
            |p| {
                let m = manifest_body(&["../../etc/passwd"], 0, 0, 10, 1, 0);
                fs::write(
                    p.join("manifest.ocdbt"),
                    encode_envelope(MANIFEST_MAGIC, &m, None).unwrap(),
                )
                .unwrap();
            },
            ErrorKind::Corrupt,
            "..",
        ),
        (
            "data file missing",
            |p| {
                fs::remove_file(data_file(p)).unwrap();
            },
            ErrorKind::NotFound,
            "d/",
        ),
        (
            "data file truncated",
            |p| {
                let f = data_file(p);
                let b = fs::read(&f).unwrap();
                fs::write(&f, &b[..b.len() / 2]).unwrap();
            },
            ErrorKind::Corrupt,
            "outside the file",
        ),
        (
            "node byte flipped",
            |p| {
                let f = data_file(p);
                let mut b = fs::read(&f).unwrap();
                let n = b.len();
                b[n - 10] ^= 0x40;
                fs::write(&f, b).unwrap();
            },
            ErrorKind::Corrupt,
            "B+tree node",
        ),
        (
            "node num_entries beyond its bytes",
            |p| {
                let body = leaf_body(&["a/.zarray"], 1 << 19, 0);
                replace_db(p, &encode_envelope(BTREE_NODE_MAGIC, &body, None).unwrap());
            },
            ErrorKind::Corrupt,
            "num_entries",
        ),
        (
            "node keys out of order",
            |p| {
                let body = leaf_body(&["b", "a"], 2, 0);
                replace_db(p, &encode_envelope(BTREE_NODE_MAGIC, &body, None).unwrap());
            },
            ErrorKind::Corrupt,
            "not above",
        ),
        (
            "node height disagrees with its reference",
            |p| {
                let body = leaf_body(&["a"], 1, 1);
                replace_db(p, &encode_envelope(BTREE_NODE_MAGIC, &body, None).unwrap());
            },
            ErrorKind::Corrupt,
            "height",
        ),
        (
            "node value reference outside its file",
            |p| {
                let mut b = vec![0u8];
                varint(&mut b, 1);
                varint(&mut b, 3);
                varint(&mut b, 0);
                b.extend_from_slice(b"d/x");
                varint(&mut b, 1);
                varint(&mut b, 9);
                b.extend_from_slice(b"b/.zarray");
                varint(&mut b, 100);
                b.push(1);
                varint(&mut b, 0);
                varint(&mut b, 1 << 30);
                let node = encode_envelope(BTREE_NODE_MAGIC, &b, None).unwrap();
                replace_db(p, &node);
            },
            ErrorKind::Corrupt,
            "outside the file",
        ),
        (
            "node decompresses beyond the limit",
            |p| {
                let bomb = vec![0u8; 300 << 20];
                let node = encode_envelope(BTREE_NODE_MAGIC, &bomb, Some(1)).unwrap();
                replace_db(p, &node);
            },
            ErrorKind::Corrupt,
            "more than",
        ),
    ];
    for (label, mutate, kind, needle) in cases {
        let (_tmp, p) = item(ArrayLayout::Ocdbt);
        mutate(&p);
        expect(label, &p, kind, needle);
    }
}

#[test]
fn zarr_and_metadata_corruptions() {
    type Mutate = fn(&Path);
    let cases: Vec<(&str, Mutate, ErrorKind, &str)> = vec![
        (
            ".zarray not JSON",
            |p| fs::write(p.join("b/.zarray"), "{nope").unwrap(),
            ErrorKind::Corrupt,
            "b/.zarray",
        ),
        (
            ".zarray big-endian dtype",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[3],"compressor":{"id":"zstd","level":1},"dtype":">i4","fill_value":null,"filters":null,"order":"C","shape":[3],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::Unsupported,
            ">i4",
        ),
        (
            ".zarray blosc compressor",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[3],"compressor":{"id":"blosc"},"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[3],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::Unsupported,
            "blosc",
        ),
        (
            ".zarray shape overflows",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[1,1],"compressor":null,"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[4294967296,4294967296],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::Corrupt,
            "overflow",
        ),
        (
            ".zarray shape no stored bytes can hold",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[1073741824],"compressor":{"id":"zstd","level":1},"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[1073741824],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::Corrupt,
            "stored bytes",
        ),
        (
            // 2^40 chunks of one element: the reader stops at the first missing chunk, holding
            // nothing for the grid (it once reserved a Vec of every index and aborted).
            ".zarray claims 2^40 chunks",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[1],"compressor":{"id":"zstd","level":1},"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[1099511627776],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::NotFound,
            "b/1",
        ),
        (
            ".zarray claims 2^60 chunks of 2 dimensions",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[1,1],"compressor":null,"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[1073741824,1073741824],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::NotFound,
            "b/0.0",
        ),
        (
            ".zarray chunks of another rank",
            |p| {
                fs::write(p.join("b/.zarray"), r#"{"chunks":[3,1],"compressor":null,"dtype":"<i4","fill_value":null,"filters":null,"order":"C","shape":[3],"zarr_format":2}"#).unwrap()
            },
            ErrorKind::Corrupt,
            "ranks",
        ),
        (
            "chunk is not zstd",
            |p| fs::write(p.join("b/0"), b"not a frame").unwrap(),
            ErrorKind::Corrupt,
            "b/.zarray",
        ),
        (
            "chunk decodes larger than the chunk",
            |p| fs::write(p.join("b/0"), zstd::bulk::compress(&[0u8; 64], 1).unwrap()).unwrap(),
            ErrorKind::Corrupt,
            "chunk 0",
        ),
        (
            "chunk missing",
            |p| fs::remove_file(p.join("w/1.0")).unwrap(),
            ErrorKind::NotFound,
            "w/1.0",
        ),
        (
            "_METADATA not JSON",
            |p| fs::write(p.join("_METADATA"), "{").unwrap(),
            ErrorKind::Corrupt,
            "_METADATA",
        ),
        (
            "_METADATA missing",
            |p| fs::remove_file(p.join("_METADATA")).unwrap(),
            ErrorKind::NotFound,
            "_METADATA",
        ),
        (
            "_METADATA unknown value type",
            |p| {
                let t = fs::read_to_string(p.join("_METADATA"))
                    .unwrap()
                    .replace("\"scalar\"", "\"my.Type\"");
                fs::write(p.join("_METADATA"), t).unwrap()
            },
            ErrorKind::Unsupported,
            "my.Type",
        ),
        (
            "_METADATA list index not a number",
            |p| {
                fs::write(p.join("_METADATA"), r#"{"tree_metadata": {"('l', 'x')": {"key_metadata": [{"key": "l", "key_type": 2}, {"key": "x", "key_type": 1}], "value_metadata": {"value_type": "None", "skip_deserialize": true}}}}"#).unwrap()
            },
            ErrorKind::Corrupt,
            "not an index",
        ),
        (
            "_METADATA leaf with no array",
            |p| {
                let t = fs::read_to_string(p.join("_METADATA"))
                    .unwrap()
                    .replace("('b',)", "('zz',)")
                    .replace("\"key\": \"b\"", "\"key\": \"zz\"");
                fs::write(p.join("_METADATA"), t).unwrap()
            },
            ErrorKind::NotFound,
            "zz/.zarray",
        ),
    ];
    for (label, mutate, kind, needle) in cases {
        let (_tmp, p) = item(ArrayLayout::Zarr);
        mutate(&p);
        expect(label, &p, kind, needle);
    }
}

#[test]
fn zarr3_shard_index_corruption() {
    let (_tmp, p) = item(ArrayLayout::Zarr);
    // Rewrite leaf b as a zarr v3 sharded array, then break its index checksum.
    let t = fs::read_to_string(p.join("_METADATA"))
        .unwrap()
        .replace("\"use_zarr3\": false", "\"use_zarr3\": true");
    fs::write(p.join("_METADATA"), t).unwrap();
    for leaf in ["w", "n"] {
        fs::remove_dir_all(p.join(leaf)).unwrap();
    }
    let t = fs::read_to_string(p.join("_METADATA")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    let mut v = v;
    v["tree_metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| k == "('b',)");
    fs::write(p.join("_METADATA"), v.to_string()).unwrap();
    fs::write(p.join("b/zarr.json"), r#"{"chunk_grid":{"configuration":{"chunk_shape":[3]},"name":"regular"},"chunk_key_encoding":{"name":"default"},"codecs":[{"configuration":{"chunk_shape":[3],"codecs":[{"configuration":{"endian":"little"},"name":"bytes"},{"configuration":{"checksum":false,"level":3},"name":"zstd"}],"index_codecs":[{"configuration":{"endian":"little"},"name":"bytes"},{"name":"crc32c"}]},"name":"sharding_indexed"}],"data_type":"int32","fill_value":0,"node_type":"array","shape":[3],"zarr_format":3}"#).unwrap();
    let frame = zstd::bulk::compress(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0], 3).unwrap();
    let mut shard = frame.clone();
    let mut index = Vec::new();
    index.extend_from_slice(&0u64.to_le_bytes());
    index.extend_from_slice(&(frame.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c(&index);
    shard.extend_from_slice(&index);
    shard.extend_from_slice(&crc.to_le_bytes());
    fs::create_dir_all(p.join("b/c")).unwrap();
    fs::write(p.join("b/c/0"), &shard).unwrap();
    // The good shard reads back.
    let store = ckpt_storage::LocalStore::open(p.parent().unwrap()).unwrap();
    let dir = ItemDir::new(&store, "item");
    let tree = restore_tree(&dir, None).unwrap();
    assert_eq!(
        tree.tensor("b").unwrap().to_vec::<i32>().unwrap(),
        [1, 2, 3]
    );
    let n = shard.len();
    shard[n - 1] ^= 1;
    fs::write(p.join("b/c/0"), &shard).unwrap();
    expect("zarr3 shard index crc", &p, ErrorKind::Corrupt, "crc32c");
    shard[n - 1] ^= 1;
    shard[frame.len()] = 0xee; // the inner chunk's offset now points past the shard
    let crc = crc32c::crc32c(&shard[frame.len()..n - 4]);
    shard[n - 4..].copy_from_slice(&crc.to_le_bytes());
    fs::write(p.join("b/c/0"), &shard).unwrap();
    expect(
        "zarr3 inner chunk outside its shard",
        &p,
        ErrorKind::Corrupt,
        "outside the shard",
    );
}

/// Arbitrary bytes as a manifest, a node or zarr metadata never panic.
mod arbitrary {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400), magic in prop::bool::ANY) {
            let _ = ckpt_handlers::ocdbt::decode_manifest(&bytes, "m");
            let _ = ckpt_handlers::orbax_array::zarr::parse_zarray(&bytes, "z");
            let _ = ckpt_handlers::orbax_array::zarr::parse_zarr_json(&bytes, "z");
            let _ = ckpt_handlers::orbax_array::metadata::parse(&bytes, "md");
            // A valid envelope around arbitrary bodies reaches the body parsers.
            let m = if magic { MANIFEST_MAGIC } else { BTREE_NODE_MAGIC };
            let env = encode_envelope(m, &bytes, None).unwrap();
            let _ = ckpt_handlers::ocdbt::decode_manifest(&env, "m");
            let _ = ckpt_handlers::ocdbt::decode_envelope(&env, m, "n");
            // ... and as the root node of a database.
            struct One(Vec<u8>);
            impl ckpt_handlers::ocdbt::DbFiles for One {
                fn size(&self, _: &str) -> ckpt_core::Result<u64> {
                    Ok(self.0.len() as u64)
                }
                fn read_range(&self, _: &str, r: std::ops::Range<u64>) -> ckpt_core::Result<Vec<u8>> {
                    Ok(self.0[r.start as usize..r.end as usize].to_vec())
                }
            }
            let node = encode_envelope(BTREE_NODE_MAGIC, &bytes, None).unwrap();
            let manifest = encode_envelope(MANIFEST_MAGIC, &manifest_body(&["d/x"], 0, 0, node.len() as u64, 1, 0), None).unwrap();
            let _ = ckpt_handlers::ocdbt::Database::open(&One(node), &manifest, "m");
        }
    }
}
