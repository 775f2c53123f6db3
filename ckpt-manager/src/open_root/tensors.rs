//! Restoring a `ckpt.tensors` item of an open root without fresh memory (issue 14): into the
//! caller's tensors, or memory-mapped.

use super::read::StepReader;
use super::OpenRoot;
use crate::progress::Tracker;
use ckpt_core::{Error, Result, Step};
use ckpt_handlers::{ItemDir, MappedTensors, Tensor, TensorHandler};
use std::sync::Arc;

impl OpenRoot {
    /// Fills `targets` from tensors item `item` of `step` ([`TensorHandler::restore_into`]).
    pub(crate) fn restore_tensors_into(
        &self,
        step: Step,
        item: &str,
        targets: &mut [(&str, &mut Tensor)],
    ) -> Result<()> {
        let mut rs = self.read_step(step)?;
        let path = self.tensors_item(&rs, item)?;
        let tracker = self.start_tracking(&mut rs, item);
        TensorHandler
            .restore_into(&ItemDir::new(rs.store(), &path), targets)
            .map_err(|e| e.with_step(step))?;
        finish_tracking(tracker);
        Ok(())
    }

    /// Maps tensors item `item` of `step` ([`TensorHandler::map`]).
    pub(crate) fn restore_tensors_mapped(&self, step: Step, item: &str) -> Result<MappedTensors> {
        let mut rs = self.read_step(step)?;
        let path = self.tensors_item(&rs, item)?;
        let tracker = self.start_tracking(&mut rs, item);
        let mapped = TensorHandler
            .map(&ItemDir::new(rs.store(), &path))
            .map_err(|e| e.with_step(step))?;
        finish_tracking(tracker);
        Ok(mapped)
    }

    /// With progress reports: the tracker of the restore of `item` alone, counting what `rs`
    /// reads from now on, the item started.
    fn start_tracking(&self, rs: &mut StepReader, item: &str) -> Option<Arc<Tracker>> {
        let tracker = self.restore_tracker(rs, &[item.to_string()])?;
        rs.count_into(Arc::clone(&tracker));
        tracker.start_item(item);
        Some(tracker)
    }

    /// The item directory of `item` in the step `rs` reads, checked to be a tensors item
    /// (`NotFound` when the step has no such item, `InvalidArgument` when its handler is not
    /// [`TensorHandler`]).
    fn tensors_item(&self, rs: &StepReader, item: &str) -> Result<String> {
        rs.check_item(item)?;
        let ts = self.item_handler(rs, item)?.type_string();
        if ts != TensorHandler::TYPE_STRING {
            return Err(Error::invalid_argument(format!(
                "item {item:?} is not a tensors item (its handler is {ts:?}, not {:?})",
                TensorHandler::TYPE_STRING
            ))
            .with_step(rs.step));
        }
        Ok(format!("{}/{item}", rs.dir))
    }
}

/// The item and the restore are done (a failed restore sends no finished report).
fn finish_tracking(tracker: Option<Arc<Tracker>>) {
    if let Some(t) = tracker {
        t.finish_item();
        t.finish();
    }
}
