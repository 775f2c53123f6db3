//! `CustomSteps` (feature `custom`).

use crate::{PreservationContext, PreservationPolicy, Verdict};
use ckpt_core::{CheckpointInfo, Step};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Keeps exactly the listed steps. As Orbax `CustomSteps`, spec §4.1; JSON
/// `{"type": "CustomSteps", "steps": [0, 2, 3]}`.
///
/// Reasons: `"listed in CustomSteps"`, `"not listed in CustomSteps"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomSteps {
    /// The steps to keep (any order; duplicates are harmless).
    pub steps: Vec<Step>,
}

impl CustomSteps {
    /// Keeps exactly `steps`.
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        CustomSteps {
            steps: steps.into_iter().collect(),
        }
    }
}

#[typetag::serde(name = "CustomSteps")]
impl PreservationPolicy for CustomSteps {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let set: HashSet<Step> = self.steps.iter().copied().collect();
        checkpoints
            .iter()
            .map(|c| {
                if set.contains(&c.step) {
                    Verdict::keep("listed in CustomSteps")
                } else {
                    Verdict::drop("not listed in CustomSteps")
                }
            })
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let set: HashSet<Step> = self.steps.iter().copied().collect();
        checkpoints.iter().map(|c| set.contains(&c.step)).collect()
    }
}
