//! `LatestN` (feature `latest`).

use crate::{PreservationContext, PreservationPolicy, Verdict};
use ckpt_core::CheckpointInfo;
use serde::{Deserialize, Serialize};

/// Keeps the newest `n` checkpoints: the last `n` of the ascending listing, i.e. the `n` highest
/// steps (deviation D1: not the `n` saved last). `n` `None`, or no more checkpoints than `n`:
/// all; `n` 0: none. As Orbax `LatestN`, spec §4.1; JSON `{"type": "LatestN", "n": 3}` (`n` may
/// be omitted or `null`).
///
/// Reasons: `"newest 3"`, `"not among newest 3"`, `"LatestN without n keeps all"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatestN {
    /// How many checkpoints to keep; `None` keeps all.
    #[serde(default)]
    pub n: Option<u64>,
}

impl LatestN {
    /// Keeps the newest `n` checkpoints (`None`: all).
    pub fn new(n: Option<u64>) -> Self {
        LatestN { n }
    }
}

#[typetag::serde(name = "LatestN")]
impl PreservationPolicy for LatestN {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        let Some(n) = self.n else {
            return checkpoints
                .iter()
                .map(|_| Verdict::keep("LatestN without n keeps all"))
                .collect();
        };
        let len = checkpoints.len();
        let first_kept = len.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
        (0..len)
            .map(|i| {
                if i >= first_kept {
                    Verdict::keep(format!("newest {n}"))
                } else {
                    Verdict::drop(format!("not among newest {n}"))
                }
            })
            .collect()
    }

    fn keep_flags(&self, checkpoints: &[CheckpointInfo], _cx: &PreservationContext) -> Vec<bool> {
        let len = checkpoints.len();
        let Some(n) = self.n else {
            return vec![true; len];
        };
        let first_kept = len.saturating_sub(usize::try_from(n).unwrap_or(usize::MAX));
        (0..len).map(|i| i >= first_kept).collect()
    }
}
