//! Property (issue 3): after any random sequence of saves, deletes and reopens, the steps on disk
//! equal those of a small reference model of the legacy retention (`max_to_keep` newest plus every
//! `keep_period`-th step, spec §4.3), written here separately from the implementation.

use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Composite, SaveOptions};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    Save(u64),
    Force(u64),
    Delete(u64),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..40).prop_map(Op::Save),
        1 => (0u64..40).prop_map(Op::Force),
        1 => (0u64..40).prop_map(Op::Delete),
        1 => Just(Op::Reopen),
    ]
}

/// The reference model: committed steps, and the retention rule applied after each save.
struct Model {
    steps: BTreeSet<u64>,
    max_to_keep: usize,
    keep_period: u64,
}

impl Model {
    fn retain(&mut self) {
        let newest: BTreeSet<u64> = self
            .steps
            .iter()
            .rev()
            .take(self.max_to_keep)
            .copied()
            .collect();
        let period = self.keep_period;
        self.steps.retain(|s| newest.contains(s) || s % period == 0);
    }
}

fn disk_steps(root: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| {
                    let n = e.file_name().into_string().ok()?;
                    (n == "0" || !n.starts_with('0')).then_some(())?;
                    n.parse().ok()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn open(root: &Path, max_to_keep: u64, keep_period: u64) -> CheckpointManager {
    let o = CheckpointManagerOptions {
        max_to_keep: Some(max_to_keep),
        keep_period: Some(keep_period),
        enable_async_checkpointing: false,
        ..Default::default()
    };
    CheckpointManager::open(root.to_str().unwrap(), o).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn disk_steps_follow_the_model(ops in proptest::collection::vec(op(), 1..14), max_to_keep in 1u64..4, keep_period in 2u64..6) {
        let d = tempfile::tempdir().unwrap();
        let mut m = open(d.path(), max_to_keep, keep_period);
        let mut model = Model { steps: BTreeSet::new(), max_to_keep: max_to_keep as usize, keep_period };
        for op in &ops {
            match *op {
                Op::Save(step) | Op::Force(step) => {
                    let force = matches!(op, Op::Force(_));
                    let items = Composite::new().json_value("s", serde_json::json!(step));
                    let result = m.save(step, items, SaveOptions::default().force(force));
                    let exists = model.steps.contains(&step);
                    let latest = model.steps.iter().next_back().copied();
                    // The default save decision saves every step above the latest (interval 1).
                    let saves = if force { !exists } else { latest.is_none_or(|l| step > l) };
                    if force && exists {
                        prop_assert!(result.is_err(), "forced save of existing step {} must fail", step);
                    } else {
                        prop_assert_eq!(result.unwrap(), saves, "save({}) force={}", step, force);
                    }
                    if saves {
                        model.steps.insert(step);
                        model.retain();
                    }
                }
                Op::Delete(step) => {
                    let result = m.delete(step);
                    prop_assert_eq!(result.is_ok(), model.steps.remove(&step), "delete({})", step);
                }
                Op::Reopen => {
                    m.close().unwrap();
                    m = open(d.path(), max_to_keep, keep_period);
                }
            }
            prop_assert_eq!(&disk_steps(d.path()), &model.steps, "after {:?}", op);
            prop_assert_eq!(m.all_steps(), model.steps.iter().copied().collect::<Vec<_>>());
        }
    }
}
