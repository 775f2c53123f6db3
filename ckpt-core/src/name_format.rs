//! Step directory names (spec §1.2).

use crate::{Error, Result, Step};
use std::fmt::Debug;

/// Builds and parses step directory names. Pure: listing a root is the store's job.
///
/// As Orbax `NameFormat` (spec §1.2), minus `find_all`/`find_step`, which the manager does with a
/// store and this trait.
pub trait NameFormat: Debug + Send + Sync {
    /// The directory name of `step`.
    fn build_name(&self, step: Step) -> String;
    /// The step a directory name stands for, or `None` if `name` is not a step name of this
    /// format. Anchored at both ends: `"7x"`, `"07"` (without fixed length) or `"-1"` are not steps.
    fn parse_name(&self, name: &str) -> Option<Step>;
    /// A description as Orbax prints it, e.g. `StandardNameFormat("step_1234")`.
    fn describe(&self) -> String;
}

/// Orbax's standard format: `[<prefix>_]<step>`, the step zero-padded to a fixed length when one
/// is set (spec §1.2). Deviation D7: the prefix is matched literally (Orbax puts it into a regular
/// expression unescaped).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StandardNameFormat {
    prefix: Option<String>,
    fixed_length: Option<usize>,
}

impl StandardNameFormat {
    /// A format with an optional `step_prefix` and `step_format_fixed_length` (digits; `None` or
    /// `0` means no padding).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidConfig`] if the prefix holds `/`, `\\` or a control character,
    /// begins or ends with whitespace, or contains the tmp suffix: such names could not be single
    /// directories of the root.
    pub fn new(step_prefix: Option<&str>, step_format_fixed_length: Option<usize>) -> Result<Self> {
        if let Some(p) = step_prefix {
            let edge_space = p.starts_with(char::is_whitespace) || p.ends_with(char::is_whitespace);
            if p.contains('/')
                || p.contains('\\')
                || p.chars().any(char::is_control)
                || edge_space
                || crate::is_tmp_name(p)
            {
                return Err(Error::invalid_config(format!(
                    "step_prefix {p:?} cannot be part of a directory name"
                )));
            }
        }
        Ok(StandardNameFormat {
            prefix: step_prefix.map(str::to_string),
            fixed_length: step_format_fixed_length.filter(|n| *n > 0),
        })
    }

    /// The step prefix, if any.
    pub fn prefix(&self) -> Option<&str> {
        self.prefix.as_deref()
    }

    /// The fixed length, if any (never `Some(0)`).
    pub fn fixed_length(&self) -> Option<usize> {
        self.fixed_length
    }
}

impl NameFormat for StandardNameFormat {
    fn build_name(&self, step: Step) -> String {
        let digits = match self.fixed_length {
            Some(n) => format!("{step:0n$}"),
            None => step.to_string(),
        };
        match &self.prefix {
            Some(p) => format!("{p}_{digits}"),
            None => digits,
        }
    }

    fn parse_name(&self, name: &str) -> Option<Step> {
        let digits = match &self.prefix {
            Some(p) => name.strip_prefix(p.as_str())?.strip_prefix('_')?,
            None => name,
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let leading_zero = digits.starts_with('0');
        let ok = match self.fixed_length {
            None => !leading_zero || digits == "0",
            Some(n) => {
                if leading_zero {
                    digits.len() == n
                } else {
                    digits.len() >= n
                }
            }
        };
        if !ok {
            return None;
        }
        digits.parse().ok()
    }

    fn describe(&self) -> String {
        format!("StandardNameFormat(\"{}\")", self.build_name(1234))
    }
}

/// Writes with one format and reads with several, as Orbax `composite_name_format` (spec §1.2):
/// for migrating a root from one naming to another.
#[derive(Debug)]
pub struct CompositeNameFormat {
    write: Box<dyn NameFormat>,
    read: Vec<Box<dyn NameFormat>>,
}

impl CompositeNameFormat {
    /// Writes names with `write`, parses with each of `read` in order (first match wins).
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidConfig`] if `write` is not one of `read` (compared by
    /// [`NameFormat::describe`]), as Orbax's `ValueError`.
    pub fn new(write: Box<dyn NameFormat>, read: Vec<Box<dyn NameFormat>>) -> Result<Self> {
        let w = write.describe();
        if !read.iter().any(|r| r.describe() == w) {
            return Err(Error::invalid_config(format!(
                "the write name format {w} must be one of the read name formats"
            )));
        }
        Ok(CompositeNameFormat { write, read })
    }
}

impl NameFormat for CompositeNameFormat {
    fn build_name(&self, step: Step) -> String {
        self.write.build_name(step)
    }

    fn parse_name(&self, name: &str) -> Option<Step> {
        self.read.iter().find_map(|f| f.parse_name(name))
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.read.iter().map(|f| f.describe()).collect();
        format!("Composite([{}])", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(p: Option<&str>, n: Option<usize>) -> StandardNameFormat {
        StandardNameFormat::new(p, n).unwrap_or_default()
    }

    #[test]
    fn build_names_as_spec_table() {
        let rows: [(Option<&str>, Option<usize>, Step, &str); 8] = [
            (None, None, 23, "23"),
            (None, Some(4), 23, "0023"),
            (Some("step"), None, 23, "step_23"),
            (Some("step"), Some(4), 23, "step_0023"),
            (None, Some(2), 111111, "111111"),
            (Some("v=step"), None, 1, "v=step_1"),
            (Some("foo"), Some(8), 555, "foo_00000555"),
            (Some("foo"), Some(12), 1234567890, "foo_001234567890"),
        ];
        for (p, n, s, want) in rows {
            assert_eq!(fmt(p, n).build_name(s), want);
            assert_eq!(fmt(p, n).parse_name(want), Some(s), "{want}");
        }
        assert_eq!(
            fmt(Some("step"), None).describe(),
            "StandardNameFormat(\"step_1234\")"
        );
    }

    #[test]
    fn parse_example_root_of_the_spec() {
        let names = [
            "abc",
            "007",
            "5.orbax-checkpoint-tmp",
            "6.orbax-checkpoint-tmp-12345",
            "9",
            "step_3",
            "10a",
            "metadata",
            "-1",
            "1e3",
            "+5",
            " 9",
            "9 ",
        ];
        let found = |f: &StandardNameFormat| -> Vec<Step> {
            names.iter().filter_map(|n| f.parse_name(n)).collect()
        };
        assert_eq!(found(&fmt(None, None)), vec![9]);
        assert_eq!(found(&fmt(None, Some(3))), vec![7]);
        assert_eq!(found(&fmt(Some("step"), None)), vec![3]);
    }

    #[test]
    fn fixed_length_rules() {
        let f = fmt(None, Some(2));
        for (name, want) in [
            ("00", Some(0)),
            ("01", Some(1)),
            ("10", Some(10)),
            ("100", Some(100)),
            ("000", None),
            ("001", None),
            ("5", None),
        ] {
            assert_eq!(f.parse_name(name), want, "{name}");
        }
        assert_eq!(fmt(None, None).parse_name("0"), Some(0));
        assert_eq!(fmt(None, None).parse_name("18446744073709551616"), None);
        assert_eq!(
            fmt(None, None).parse_name("9007199254740993"),
            Some(9007199254740993)
        );
    }

    #[test]
    fn prefix_is_literal() {
        let f = fmt(Some("run+1"), None);
        assert_eq!(f.parse_name("run+1_4"), Some(4));
        assert_eq!(f.parse_name("runn1_4"), None);
        let dot = fmt(Some("a.b"), None);
        assert_eq!(dot.parse_name("axb_4"), None);
        assert!(StandardNameFormat::new(Some("a/b"), None).is_err());
    }

    #[test]
    fn composite_reads_all_writes_one() {
        let c = CompositeNameFormat::new(
            Box::new(fmt(Some("ckpt"), Some(8))),
            vec![
                Box::new(fmt(None, None)),
                Box::new(fmt(Some("ckpt"), Some(8))),
            ],
        );
        let Ok(c) = c else {
            panic!("composite rejected")
        };
        assert_eq!(c.build_name(5), "ckpt_00000005");
        assert_eq!(c.parse_name("7"), Some(7));
        assert_eq!(c.parse_name("ckpt_00000009"), Some(9));
        let bad = CompositeNameFormat::new(
            Box::new(fmt(Some("x"), None)),
            vec![Box::new(fmt(None, None))],
        );
        assert!(bad.is_err());
    }
}
