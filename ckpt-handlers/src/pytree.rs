//! [`PyTree`]: a JAX pytree as ckpt holds it — nested dicts and lists whose leaves are arrays,
//! scalars, strings and empty nodes — the value of an Orbax StandardSave / PyTreeSave item
//! (docs/orbax-arrays/zarr-and-metadata.md §5, §8).

use crate::Tensor;
use ckpt_core::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;

/// A pytree: what Orbax's `StandardSave` / `PyTreeSave` write and `restore()` gives back.
///
/// Dict keys sort by their UTF-8 bytes (= Python's code-point order, JAX's flattening order);
/// list elements keep their order. A saved tuple comes back as a list, as in Orbax.
#[derive(Clone, PartialEq)]
pub enum PyTree {
    /// A dict with string keys (Orbax `key_type` 2).
    Dict(BTreeMap<String, PyTree>),
    /// A list or tuple (Orbax `key_type` 1).
    List(Vec<PyTree>),
    /// An n-d array leaf (Orbax `np.ndarray`; a `jax.Array` leaf restores as one too), any shape,
    /// 0-d included, with at least one element.
    Array(Tensor),
    /// A Python scalar leaf (Orbax `scalar`): a 0-d tensor, `int64` for a Python `int`, `float64`
    /// for a `float`, `bool` for a `bool`; Orbax restores it as the Python number.
    Scalar(Tensor),
    /// A string leaf (Orbax `string`, kept in `_strings.json`).
    String(String),
    /// `None` (Orbax stores no data for it).
    None,
}

impl fmt::Debug for PyTree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyTree::Dict(m) => f.debug_map().entries(m.iter()).finish(),
            PyTree::List(l) => f.debug_list().entries(l.iter()).finish(),
            PyTree::Array(t) => write!(f, "Array({} {:?})", t.dtype(), t.shape()),
            PyTree::Scalar(t) => write!(f, "Scalar({})", t.dtype()),
            PyTree::String(s) => write!(f, "String({s:?})"),
            PyTree::None => f.write_str("None"),
        }
    }
}

/// One step of a key path: a dict key or a list index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyEntry {
    /// A dict key.
    Key(String),
    /// A list (or tuple) index.
    Index(usize),
}

impl fmt::Display for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyEntry::Key(k) => f.write_str(k),
            KeyEntry::Index(i) => write!(f, "{i}"),
        }
    }
}

/// Orbax's param name of a key path: the entries joined with `.` (`params.dense.kernel`,
/// `layers.0.w`), the name under which the leaf's array is stored.
pub fn param_name(path: &[KeyEntry]) -> String {
    path.iter()
        .map(|k| k.to_string())
        .collect::<Vec<_>>()
        .join(".")
}

impl PyTree {
    /// An empty dict.
    pub fn dict() -> PyTree {
        PyTree::Dict(BTreeMap::new())
    }

    /// This dict with `value` under `key` (replacing any), for building trees in one
    /// expression; on a non-dict, the dict `{key: value}`.
    pub fn with(self, key: impl Into<String>, value: impl Into<PyTree>) -> PyTree {
        let mut m = match self {
            PyTree::Dict(m) => m,
            _ => BTreeMap::new(),
        };
        m.insert(key.into(), value.into());
        PyTree::Dict(m)
    }

    /// The leaves in JAX's flattening order, each with its key path. Empty dicts and lists
    /// and `None` are leaves (Orbax records them as empty leaves); a non-empty dict or list is not.
    pub fn leaves(&self) -> Vec<(Vec<KeyEntry>, &PyTree)> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect_leaves(&mut path, &mut out);
        out
    }

    fn collect_leaves<'a>(
        &'a self,
        path: &mut Vec<KeyEntry>,
        out: &mut Vec<(Vec<KeyEntry>, &'a PyTree)>,
    ) {
        match self {
            PyTree::Dict(m) if !m.is_empty() => {
                for (k, v) in m {
                    path.push(KeyEntry::Key(k.clone()));
                    v.collect_leaves(path, out);
                    path.pop();
                }
            }
            PyTree::List(l) if !l.is_empty() => {
                for (i, v) in l.iter().enumerate() {
                    path.push(KeyEntry::Index(i));
                    v.collect_leaves(path, out);
                    path.pop();
                }
            }
            leaf => out.push((path.clone(), leaf)),
        }
    }

    /// The leaves as [`PyTree::leaves`] gives them, writable.
    pub(crate) fn leaves_mut(&mut self) -> Vec<(Vec<KeyEntry>, &mut PyTree)> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect_leaves_mut(&mut path, &mut out);
        out
    }

    fn collect_leaves_mut<'a>(
        &'a mut self,
        path: &mut Vec<KeyEntry>,
        out: &mut Vec<(Vec<KeyEntry>, &'a mut PyTree)>,
    ) {
        let inner_node = match self {
            PyTree::Dict(m) => !m.is_empty(),
            PyTree::List(l) => !l.is_empty(),
            _ => false,
        };
        if !inner_node {
            out.push((path.clone(), self));
            return;
        }
        match self {
            PyTree::Dict(m) => {
                for (k, v) in m.iter_mut() {
                    path.push(KeyEntry::Key(k.clone()));
                    v.collect_leaves_mut(path, out);
                    path.pop();
                }
            }
            PyTree::List(l) => {
                for (i, v) in l.iter_mut().enumerate() {
                    path.push(KeyEntry::Index(i));
                    v.collect_leaves_mut(path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The subtree at `path`, if present.
    pub fn get_path(&self, path: &[KeyEntry]) -> Option<&PyTree> {
        let mut at = self;
        for k in path {
            at = match (at, k) {
                (PyTree::Dict(m), KeyEntry::Key(k)) => m.get(k)?,
                (PyTree::List(l), KeyEntry::Index(i)) => l.get(*i)?,
                _ => return None,
            };
        }
        Some(at)
    }

    /// The leaf whose param name ([`param_name`]) is `name`, if present (`params.dense.kernel`).
    pub fn get(&self, name: &str) -> Option<&PyTree> {
        self.leaves()
            .into_iter()
            .find(|(p, _)| param_name(p) == name)
            .map(|(_, v)| v)
    }

    /// The array (or scalar) tensor of the leaf named `name` (see [`PyTree::get`]).
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        match self.get(name)? {
            PyTree::Array(t) | PyTree::Scalar(t) => Some(t),
            _ => None,
        }
    }

    /// Every array and scalar leaf by param name (`params.dense.kernel` → tensor), e.g. to
    /// export as safetensors.
    pub fn tensors(&self) -> BTreeMap<String, &Tensor> {
        self.leaves()
            .into_iter()
            .filter_map(|(p, v)| match v {
                PyTree::Array(t) | PyTree::Scalar(t) => Some((param_name(&p), t)),
                _ => None,
            })
            .collect()
    }

    /// A tree rebuilt from leaves and their key paths (the inverse of [`PyTree::leaves`]).
    ///
    /// # Errors
    /// `InvalidArgument` when two paths disagree on a node's kind (a dict key and a list index
    /// at the same place), a path repeats, or a list's indices are not `0..n`.
    pub fn from_leaves(leaves: Vec<(Vec<KeyEntry>, PyTree)>) -> Result<PyTree> {
        let mut root = Builder::Empty;
        for (path, leaf) in leaves {
            root.insert(&path, leaf, &path)?;
        }
        root.build()
    }
}

impl From<Tensor> for PyTree {
    fn from(t: Tensor) -> PyTree {
        PyTree::Array(t)
    }
}

/// Building a tree from paths.
enum Builder {
    Empty,
    Dict(BTreeMap<String, Builder>),
    List(BTreeMap<usize, Builder>),
    Leaf(PyTree),
}

fn clash(path: &[KeyEntry]) -> Error {
    Error::invalid_argument(format!(
        "pytree leaf {:?} clashes with another leaf at the same place",
        param_name(path)
    ))
}

impl Builder {
    fn insert(&mut self, rest: &[KeyEntry], leaf: PyTree, full: &[KeyEntry]) -> Result<()> {
        let Some((first, tail)) = rest.split_first() else {
            return match self {
                Builder::Empty => {
                    *self = Builder::Leaf(leaf);
                    Ok(())
                }
                _ => Err(clash(full)),
            };
        };
        if let Builder::Empty = self {
            *self = match first {
                KeyEntry::Key(_) => Builder::Dict(BTreeMap::new()),
                KeyEntry::Index(_) => Builder::List(BTreeMap::new()),
            };
        }
        match (self, first) {
            (Builder::Dict(m), KeyEntry::Key(k)) => m
                .entry(k.clone())
                .or_insert(Builder::Empty)
                .insert(tail, leaf, full),
            (Builder::List(m), KeyEntry::Index(i)) => m
                .entry(*i)
                .or_insert(Builder::Empty)
                .insert(tail, leaf, full),
            _ => Err(clash(full)),
        }
    }

    fn build(self) -> Result<PyTree> {
        Ok(match self {
            Builder::Empty => PyTree::dict(),
            Builder::Leaf(l) => l,
            Builder::Dict(m) => PyTree::Dict(
                m.into_iter()
                    .map(|(k, v)| Ok((k, v.build()?)))
                    .collect::<Result<_>>()?,
            ),
            Builder::List(m) => {
                let n = m.len();
                if m.keys().enumerate().any(|(i, k)| i != *k) {
                    return Err(Error::invalid_argument(format!(
                        "pytree list indices are not 0..{n}"
                    )));
                }
                PyTree::List(m.into_values().map(Builder::build).collect::<Result<_>>()?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_round_trip() {
        let t = PyTree::dict().with("b", Tensor::scalar(1i32)).with(
            "a",
            PyTree::List(vec![
                Tensor::scalar(2.0f32).into(),
                PyTree::dict(),
                PyTree::None,
            ]),
        );
        let leaves = t.leaves();
        let names: Vec<String> = leaves.iter().map(|(p, _)| param_name(p)).collect();
        assert_eq!(names, ["a.0", "a.1", "a.2", "b"]);
        let owned = leaves.into_iter().map(|(p, v)| (p, v.clone())).collect();
        assert_eq!(PyTree::from_leaves(owned).unwrap(), t);
        assert!(t.tensor("b").is_some());
        assert!(t.tensor("a.1").is_none());
    }

    #[test]
    fn from_leaves_refuses_clashes_and_gaps() {
        let k = |s: &str| KeyEntry::Key(s.into());
        let a = (vec![k("x")], PyTree::None);
        let b = (vec![k("x"), k("y")], PyTree::None);
        assert!(PyTree::from_leaves(vec![a, b]).is_err());
        let gap = (vec![k("l"), KeyEntry::Index(1)], PyTree::None);
        assert!(PyTree::from_leaves(vec![gap]).is_err());
    }
}
