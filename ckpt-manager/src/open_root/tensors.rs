//! Restoring a `ckpt.tensors` item of an open root without fresh memory (issue 14): into the
//! caller's tensors, or memory-mapped.

use super::read::StepReader;
use super::OpenRoot;
use ckpt_core::{Error, Result, Step};
use ckpt_handlers::{ItemDir, MappedTensors, Tensor, TensorHandler};

impl OpenRoot {
    /// Fills `targets` from tensors item `item` of `step` ([`TensorHandler::restore_into`]).
    pub(crate) fn restore_tensors_into(
        &self,
        step: Step,
        item: &str,
        targets: &mut [(&str, &mut Tensor)],
    ) -> Result<()> {
        let rs = self.read_step(step)?;
        let path = self.tensors_item(&rs, item)?;
        TensorHandler
            .restore_into(&ItemDir::new(rs.store(), &path), targets)
            .map_err(|e| e.with_step(step))
    }

    /// Maps tensors item `item` of `step` ([`TensorHandler::map`]).
    pub(crate) fn restore_tensors_mapped(&self, step: Step, item: &str) -> Result<MappedTensors> {
        let rs = self.read_step(step)?;
        let path = self.tensors_item(&rs, item)?;
        TensorHandler
            .map(&ItemDir::new(rs.store(), &path))
            .map_err(|e| e.with_step(step))
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
