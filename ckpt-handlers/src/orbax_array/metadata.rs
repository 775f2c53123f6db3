//! An Orbax array item's `_METADATA` (docs/orbax-arrays/zarr-and-metadata.md §6): the tree's
//! leaves (key paths, value types) and the item's layout flags, read and written byte for byte
//! as Orbax 0.12.8 writes them.

use crate::pytree::KeyEntry;
use ckpt_core::{pyjson, Error, Result};
use serde_json::{json, Map, Value as Json};

/// The `_METADATA` file name.
pub const METADATA_FILE: &str = "_METADATA";

/// One leaf of `tree_metadata`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafMetadata {
    /// The key path.
    pub path: Vec<KeyEntry>,
    /// Orbax's `value_type`: `np.ndarray`, `jax.Array`, `scalar`, `string`, `None`, `Dict`,
    /// `List`, `Tuple`.
    pub value_type: String,
    /// Orbax's `skip_deserialize` (true for empty leaves).
    pub skip_deserialize: bool,
}

/// What `_METADATA` says.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeMetadata {
    /// The leaves, in the file's (JAX flattening) order.
    pub leaves: Vec<LeafMetadata>,
    /// Whether the arrays are in an OCDBT database.
    pub use_ocdbt: bool,
    /// Whether the arrays are zarr v3 (else v2).
    pub use_zarr3: bool,
    /// The save's `custom_metadata` (`null` when none).
    pub custom_metadata: Json,
}

/// Parses `_METADATA` (`what` names the file in errors).
///
/// # Errors
/// `Corrupt` when it is not JSON, `tree_metadata` is missing or not an object, a leaf lacks
/// `key_metadata`/`value_metadata`, or a list index is not a number.
pub fn parse(bytes: &[u8], what: &str) -> Result<TreeMetadata> {
    let v: Json = pyjson::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("{what}: not JSON")).with_source(e))?;
    let bad = |m: String| Error::corrupt(format!("{what}: {m}"));
    let tree = v
        .get("tree_metadata")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("`tree_metadata` is not an object".into()))?;
    let mut leaves = Vec::with_capacity(tree.len());
    for (name, leaf) in tree {
        let keys = leaf
            .get("key_metadata")
            .and_then(Json::as_array)
            .ok_or_else(|| bad(format!("leaf {name}: `key_metadata` is not a list")))?;
        let mut path = Vec::with_capacity(keys.len());
        for k in keys {
            let key = match k.get("key") {
                Some(Json::String(s)) => s.clone(),
                Some(Json::Number(n)) => n.to_string(),
                _ => return Err(bad(format!("leaf {name}: a key is not a string"))),
            };
            let entry = match k.get("key_type").and_then(Json::as_u64) {
                Some(1) => KeyEntry::Index(key.parse().map_err(|_| {
                    bad(format!("leaf {name}: sequence key {key:?} is not an index"))
                })?),
                _ => KeyEntry::Key(key),
            };
            path.push(entry);
        }
        let vm = leaf
            .get("value_metadata")
            .and_then(Json::as_object)
            .ok_or_else(|| bad(format!("leaf {name}: `value_metadata` is not an object")))?;
        let value_type = vm
            .get("value_type")
            .and_then(Json::as_str)
            .ok_or_else(|| bad(format!("leaf {name}: `value_type` is not a string")))?
            .to_string();
        let skip_deserialize = vm
            .get("skip_deserialize")
            .and_then(Json::as_bool)
            .unwrap_or(false);
        leaves.push(LeafMetadata {
            path,
            value_type,
            skip_deserialize,
        });
    }
    Ok(TreeMetadata {
        leaves,
        use_ocdbt: v.get("use_ocdbt").and_then(Json::as_bool).unwrap_or(true),
        use_zarr3: v.get("use_zarr3").and_then(Json::as_bool).unwrap_or(false),
        custom_metadata: v.get("custom_metadata").cloned().unwrap_or(Json::Null),
    })
}

/// The `_METADATA` bytes for `meta`, as Orbax's `json.dumps` writes them (Python separators,
/// `ensure_ascii`, Orbax's key order).
///
/// # Errors
/// `InvalidArgument` when the JSON cannot be written (cannot happen for these values).
pub fn to_bytes(meta: &TreeMetadata) -> Result<Vec<u8>> {
    let mut tree = Map::new();
    for leaf in &meta.leaves {
        let keys: Vec<Json> = leaf
            .path
            .iter()
            .map(|k| match k {
                KeyEntry::Key(s) => json!({"key": s, "key_type": 2}),
                KeyEntry::Index(i) => json!({"key": i.to_string(), "key_type": 1}),
            })
            .collect();
        tree.insert(
            tuple_repr(&leaf.path),
            json!({
                "key_metadata": keys,
                "value_metadata": {
                    "value_type": leaf.value_type,
                    "skip_deserialize": leaf.skip_deserialize,
                },
            }),
        );
    }
    let mut top = Map::new();
    top.insert("tree_metadata".into(), Json::Object(tree));
    top.insert("use_ocdbt".into(), Json::Bool(meta.use_ocdbt));
    top.insert("use_zarr3".into(), Json::Bool(meta.use_zarr3));
    top.insert(
        "store_array_data_equal_to_fill_value".into(),
        Json::Bool(true),
    );
    top.insert("custom_metadata".into(), meta.custom_metadata.clone());
    pyjson::to_vec(&Json::Object(top))
}

/// Python's `repr` of the tuple of a key path's names as strings: `('a',)`, `('nested', 'w')`,
/// `('lst', '0')`.
pub fn tuple_repr(path: &[KeyEntry]) -> String {
    let items: Vec<String> = path.iter().map(|k| str_repr(&k.to_string())).collect();
    match items.len() {
        1 => format!("({},)", items[0]),
        _ => format!("({})", items.join(", ")),
    }
}

/// Python's `repr` of a `str`: single quotes unless the text has `'` and no `"`; backslash,
/// the quote, `\t \n \r` and other control characters escaped.
pub fn str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let n = c as u32;
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n < 0x10000 {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reprs_as_python() {
        let k = |s: &str| KeyEntry::Key(s.into());
        assert_eq!(tuple_repr(&[k("a")]), "('a',)");
        assert_eq!(tuple_repr(&[k("nested"), k("bias")]), "('nested', 'bias')");
        assert_eq!(tuple_repr(&[k("l"), KeyEntry::Index(0)]), "('l', '0')");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("say \"hi\""), "'say \"hi\"'");
        assert_eq!(str_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(str_repr("x\\y\n\u{7}"), "'x\\\\y\\n\\x07'");
    }

    #[test]
    fn metadata_matches_orbax_bytes() {
        // The fixture default_sync/0/default/_METADATA's first leaf, as Orbax wrote it.
        let meta = TreeMetadata {
            leaves: vec![LeafMetadata {
                path: vec![KeyEntry::Key("a".into())],
                value_type: "np.ndarray".into(),
                skip_deserialize: false,
            }],
            use_ocdbt: true,
            use_zarr3: false,
            custom_metadata: Json::Null,
        };
        let bytes = to_bytes(&meta).unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            r#"{"tree_metadata": {"('a',)": {"key_metadata": [{"key": "a", "key_type": 2}], "value_metadata": {"value_type": "np.ndarray", "skip_deserialize": false}}}, "use_ocdbt": true, "use_zarr3": false, "store_array_data_equal_to_fill_value": true, "custom_metadata": null}"#
        );
        assert_eq!(parse(&bytes, "t").unwrap(), meta);
    }
}
