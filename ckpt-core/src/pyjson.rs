//! JSON as Python's `json.dumps` writes it, and a lenient reader for what Python writes.
//!
//! Orbax writes every JSON file with `json.dumps` defaults: separators `", "` and `": "`, keys in
//! insertion order, `ensure_ascii=True` (every character outside printable ASCII as `\uXXXX`,
//! surrogate pairs above U+FFFF), floats as Python `repr` (`0.1`, `1.0`, `1e-05`, `1e+16`), and
//! bare `NaN`/`Infinity`/`-Infinity` tokens. [`to_string`] reproduces that byte for byte, so files
//! ckpt writes are byte-comparable with Orbax's (spec §1.5, §8.5). [`from_slice`] accepts those
//! bare tokens, which standard JSON (and `serde_json`) rejects.

use crate::{Error, ErrorKind, Result};
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};
use std::io::{self, Write};

/// Serializes `value` exactly as Python's `json.dumps(value)` would.
///
/// Non-finite floats in `value` are written as `null` (serde's data model turns them into unit
/// before a formatter sees them); `serde_json::Value` cannot hold them in the first place.
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] when `value` cannot be serialized as JSON (e.g. a map with
/// non-string keys).
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let bytes = to_vec(value)?;
    String::from_utf8(bytes).map_err(|e| {
        Error::new(ErrorKind::InvalidArgument, "JSON output is not UTF-8").with_source(e)
    })
}

/// As [`to_string`], as bytes.
///
/// # Errors
/// As [`to_string`].
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
    value.serialize(&mut ser).map_err(|e| {
        Error::new(
            ErrorKind::InvalidArgument,
            "value cannot be written as JSON",
        )
        .with_source(e)
    })?;
    Ok(out)
}

/// Parses JSON as Python's `json.loads` accepts it: standard JSON plus the bare tokens `NaN`,
/// `Infinity` and `-Infinity`, which are read as `null` (deviation: `serde_json::Value` cannot
/// hold non-finite numbers; a metric read this way counts as having no usable value).
///
/// # Errors
/// [`ErrorKind::Corrupt`] when the bytes are not such JSON (not UTF-8, truncated, junk).
pub fn from_slice(bytes: &[u8]) -> Result<serde_json::Value> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::corrupt("JSON file is not UTF-8").with_source(e))?;
    let cleaned = replace_non_finite(text);
    serde_json::from_str(&cleaned).map_err(|e| Error::corrupt("invalid JSON").with_source(e))
}

/// The deepest nesting of arrays and objects that [`from_slice`] reads (levels; `[[1]]` is 2):
/// `serde_json`'s recursion limit. A deeper text is `Corrupt` there ("recursion limit
/// exceeded"), so writers refuse it instead ([`check_nesting_depth`]): what cannot be read back
/// is never written.
pub const MAX_NESTING_DEPTH: usize = 127;

/// How deeply arrays and objects nest in the JSON text `bytes` (levels: `1` is 0, `[]` and `{}`
/// are 1, `{"a": [1]}` is 2), counting brackets outside strings. Linear in the length, no
/// allocation; for text that is not JSON the count is still finite and meaningless.
pub fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// How deeply arrays and objects nest in `value`, as [`nesting_depth`] counts it in the value's
/// text; the walk stops once it is deeper than `limit` (returning that depth). Iterative: any
/// depth is measured without recursion.
pub fn value_nesting_depth(value: &serde_json::Value, limit: usize) -> usize {
    use serde_json::Value;
    let mut max = 0;
    let mut stack: Vec<(&Value, usize)> = vec![(value, 1)];
    while let Some((v, d)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match v {
            Value::Array(a) => Box::new(a.iter()),
            Value::Object(o) => Box::new(o.values()),
            _ => continue,
        };
        max = max.max(d);
        if max > limit {
            return max;
        }
        stack.extend(children.map(|c| (c, d + 1)));
    }
    max
}

/// Refuses JSON text nested deeper than `limit` levels (at most [`MAX_NESTING_DEPTH`] for a
/// whole file; less for a value written inside another object, e.g. `limit - 1` for the value
/// of a top-level key).
///
/// # Errors
/// [`ErrorKind::InvalidArgument`] saying the depth and the limit, when `depth > limit`; `what`
/// names the value (e.g. `"item \"state\""`).
pub fn check_nesting_depth(what: &str, depth: usize, limit: usize) -> Result<()> {
    if depth > limit {
        return Err(Error::invalid_argument(format!(
            "{what} is JSON nested {depth} levels deep, but at most {limit} levels can be read back \
             (the JSON reader's recursion limit is {MAX_NESTING_DEPTH}); nothing was saved"
        )));
    }
    Ok(())
}

/// Replaces bare `NaN`, `Infinity` and `-Infinity` tokens outside strings with `null`.
fn replace_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else {
            let token = ["-Infinity", "Infinity", "NaN"]
                .into_iter()
                .find(|t| rest.starts_with(t));
            if let Some(t) = token {
                out.push_str("null");
                rest = &rest[t.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    std::borrow::Cow::Owned(out)
}

/// Formats a float as Python's `repr(float)` does: the shortest digits that round-trip,
/// positional between 1e-4 and 1e16 (`0.0001`, `123.0`), scientific outside (`1e-05`, `1e+16`).
pub fn python_float_repr(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_string();
    }
    if x.is_infinite() {
        return if x > 0.0 {
            "Infinity".to_string()
        } else {
            "-Infinity".to_string()
        };
    }
    format_shortest(&format!("{:e}", x))
}

/// Python repr of an `f32` read as the shortest digits that round-trip through `f32`.
fn python_f32_repr(x: f32) -> String {
    if !x.is_finite() {
        return python_float_repr(f64::from(x));
    }
    format_shortest(&format!("{:e}", x))
}

/// Turns Rust's shortest `{:e}` output (`-1.2345e2`) into Python's repr layout.
fn format_shortest(sci: &str) -> String {
    let (neg, body) = match sci.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, sci),
    };
    let (mantissa, exp) = body.split_once('e').unwrap_or((body, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1; // value = 0.DIGITS * 10^decpt
    let mut out = String::with_capacity(digits.len() + 8);
    if neg {
        out.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        out.push('e');
        out.push(if e < 0 { '-' } else { '+' });
        out.push_str(&format!("{:02}", e.abs()));
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..(-decpt) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let d = decpt as usize;
        if d >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..d {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..d]);
            out.push('.');
            out.push_str(&digits[d..]);
        }
    }
    out
}

/// A `serde_json` formatter with Python `json.dumps` defaults.
#[derive(Debug, Clone, Copy, Default)]
struct PythonFormatter;

impl Formatter for PythonFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        w.write_all(python_f32_repr(value).as_bytes())
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // serde_json hands over runs without `"`, `\\` and C0 controls; escape the rest as
        // Python's ensure_ascii does: DEL and everything outside ASCII as \uXXXX.
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..i])?;
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                write!(w, "\\u{:04x}", unit)?;
            }
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let s: String = match escape {
            CharEscape::Quote => "\\\"".into(),
            CharEscape::ReverseSolidus => "\\\\".into(),
            CharEscape::Solidus => "/".into(),
            CharEscape::Backspace => "\\b".into(),
            CharEscape::FormFeed => "\\f".into(),
            CharEscape::LineFeed => "\\n".into(),
            CharEscape::CarriageReturn => "\\r".into(),
            CharEscape::Tab => "\\t".into(),
            CharEscape::AsciiControl(b) => format!("\\u{:04x}", b),
        };
        w.write_all(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1e-10, "1e-10"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123.456, "123.456"),
            (2.5e100, "2.5e+100"),
            (-1.5e-7, "-1.5e-07"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(python_float_repr(x), want, "repr of {x:e}");
        }
    }

    #[test]
    fn dumps_matches_python_bytes() {
        // json.dumps({"name": "run-α", "x": [1, 2.5, None, True], "e": {}, "big": 9007199254740993, "q": "a\"\\\n\x7f😀"})
        let v = json!({"name": "run-α", "x": [1, 2.5, null, true], "e": {}, "big": 9007199254740993u64, "q": "a\"\\\n\u{7f}😀"});
        assert_eq!(
            to_string(&v).unwrap_or_default(),
            r#"{"name": "run-\u03b1", "x": [1, 2.5, null, true], "e": {}, "big": 9007199254740993, "q": "a\"\\\n\u007f\ud83d\ude00"}"#
        );
    }

    #[test]
    fn reads_python_non_finite_tokens_outside_strings_only() {
        let v = from_slice(
            br#"{"a": NaN, "b": [Infinity, -Infinity], "s": "NaN Infinity", "t": "\"NaN"}"#,
        )
        .unwrap_or_default();
        assert_eq!(
            v,
            json!({"a": null, "b": [null, null], "s": "NaN Infinity", "t": "\"NaN"})
        );
    }

    #[test]
    fn rejects_junk_as_corrupt() {
        for bad in [&b"{"[..], b"", b"nul", b"\xff\xfe", b"{\"a\": 1,}"] {
            let e = from_slice(bad).err().map(|e| e.kind());
            assert_eq!(e, Some(ErrorKind::Corrupt), "{bad:?}");
        }
    }

    #[test]
    fn the_depth_limit_is_what_from_slice_reads() {
        let nested = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        let ok = nested(MAX_NESTING_DEPTH);
        assert!(from_slice(ok.as_bytes()).is_ok());
        assert_eq!(nesting_depth(ok.as_bytes()), MAX_NESTING_DEPTH);
        let deep = nested(MAX_NESTING_DEPTH + 1);
        let e = from_slice(deep.as_bytes()).err().map(|e| e.kind());
        assert_eq!(e, Some(ErrorKind::Corrupt));
        assert_eq!(nesting_depth(deep.as_bytes()), MAX_NESTING_DEPTH + 1);
        // Objects count as arrays do; brackets inside strings do not count.
        let v = json!({"a": [{"b": "[[[{{{"}], "c": 1});
        let text = to_vec(&v).unwrap_or_default();
        assert_eq!(nesting_depth(&text), 3);
        assert_eq!(value_nesting_depth(&v, 100), 3);
        assert_eq!(nesting_depth(br#""\"[[""#), 0);
        assert_eq!(value_nesting_depth(&json!(1), 100), 0);
        let v: serde_json::Value = serde_json::from_str(&ok).unwrap_or_default();
        assert_eq!(value_nesting_depth(&v, 1000), MAX_NESTING_DEPTH);
        assert_eq!(value_nesting_depth(&v, 10), 11);
        assert!(check_nesting_depth("x", MAX_NESTING_DEPTH, MAX_NESTING_DEPTH).is_ok());
        let e = check_nesting_depth("item \"s\"", 200, MAX_NESTING_DEPTH).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("item \"s\"") && e.message().contains("200"));
    }

    proptest::proptest! {
        #[test]
        fn float_repr_round_trips(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let s = python_float_repr(x);
            let back: f64 = s.parse().unwrap_or(f64::NAN);
            proptest::prop_assert_eq!(back.to_bits(), x.to_bits(), "{}", s);
            proptest::prop_assert!(s.contains('.') || s.contains('e'));
        }
    }
}
