//! `PreserveAll` and `AnyPreservationPolicy` (always built).

use crate::{PreservationContext, PreservationPolicy, Verdict};
use ckpt_core::{CheckpointInfo, Error, Result};
use serde::{Deserialize, Serialize};

/// Keeps every checkpoint. As Orbax `PreserveAll`, spec §4.1; JSON `{"type": "PreserveAll"}`.
/// Reason: `"preserve all"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreserveAll {}

#[typetag::serde(name = "PreserveAll")]
impl PreservationPolicy for PreserveAll {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        checkpoints
            .iter()
            .map(|_| Verdict::keep("preserve all"))
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        vec![true; checkpoints.len()]
    }
}

/// Keeps a checkpoint that any child keeps: the element-wise OR of the children's verdicts, every
/// child evaluated (no short-circuit). As Orbax `AnyPreservationPolicy`, spec §4.1; JSON
/// `{"type": "AnyPreservationPolicy", "policies": [POLICY, ...]}`.
///
/// Reason: the reasons of the children that keep the checkpoint, joined with `"; "`; for a
/// dropped checkpoint, the reasons of all children.
///
/// Deviation: an empty `policies` list is rejected by [`PreservationPolicy::validate`]
/// (`InvalidConfig`; Orbax fails at the first save, in numpy), and if asked anyway it keeps
/// everything (reason `"AnyPreservationPolicy without policies keeps all"`): a misconfiguration
/// never deletes. A child that returns too few verdicts counts as keeping the missing ones.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnyPreservationPolicy {
    /// The children.
    pub policies: Vec<Box<dyn PreservationPolicy>>,
}

impl AnyPreservationPolicy {
    /// Keeps what any of `policies` keeps.
    pub fn new(policies: Vec<Box<dyn PreservationPolicy>>) -> Self {
        AnyPreservationPolicy { policies }
    }
}

#[typetag::serde(name = "AnyPreservationPolicy")]
impl PreservationPolicy for AnyPreservationPolicy {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        cx: &PreservationContext,
    ) -> Vec<Verdict> {
        if self.policies.is_empty() {
            return checkpoints
                .iter()
                .map(|_| Verdict::keep("AnyPreservationPolicy without policies keeps all"))
                .collect();
        }
        let per_child: Vec<Vec<Verdict>> = self
            .policies
            .iter()
            .map(|p| p.should_preserve(checkpoints, cx))
            .collect();
        (0..checkpoints.len())
            .map(|i| {
                let verdicts: Vec<Verdict> = per_child
                    .iter()
                    .map(|vs| {
                        vs.get(i)
                            .cloned()
                            .unwrap_or_else(|| Verdict::keep("no verdict from the policy; kept"))
                    })
                    .collect();
                let kept: Vec<&str> = verdicts
                    .iter()
                    .filter(|v| v.keep)
                    .map(|v| v.reason.as_str())
                    .collect();
                if kept.is_empty() {
                    let all: Vec<&str> = verdicts.iter().map(|v| v.reason.as_str()).collect();
                    Verdict::drop(all.join("; "))
                } else {
                    Verdict::keep(kept.join("; "))
                }
            })
            .collect()
    }

    /// The element-wise OR of the children's flags; a missing flag counts as keep.
    fn keep_flags(&self, checkpoints: &[CheckpointInfo], cx: &PreservationContext) -> Vec<bool> {
        if self.policies.is_empty() {
            return vec![true; checkpoints.len()];
        }
        let mut out = vec![false; checkpoints.len()];
        for p in &self.policies {
            let flags = p.keep_flags(checkpoints, cx);
            for (i, o) in out.iter_mut().enumerate() {
                *o |= flags.get(i).copied().unwrap_or(true);
            }
        }
        out
    }

    /// The union of the children's, each name once, in the children's order.
    fn ranking_metrics(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for name in self.policies.iter().flat_map(|p| p.ranking_metrics()) {
            if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// # Errors
    /// `InvalidConfig` when `policies` is empty; otherwise the first child's error, its message
    /// prefixed with the child's index.
    fn validate(&self) -> Result<()> {
        if self.policies.is_empty() {
            return Err(Error::invalid_config(
                "AnyPreservationPolicy: policies must not be empty",
            ));
        }
        for (i, p) in self.policies.iter().enumerate() {
            p.validate().map_err(|e| {
                Error::new(
                    e.kind(),
                    format!("AnyPreservationPolicy.policies[{i}]: {}", e.message()),
                )
            })?;
        }
        Ok(())
    }
}
