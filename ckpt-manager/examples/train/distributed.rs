//! Data-parallel training over several processes (issue 15): the per-step gradient exchange
//! and the sharded layout of the parameters in a checkpoint. Who the processes are and how they
//! start: [`crate::launch`].
//!
//! # The arithmetic: bit-exact for any process count up to [`MICRO_BATCHES`]
//! Each mini-batch is cut into [`MICRO_BATCHES`] fixed micro-batches; process `r` of `N`
//! computes the mean gradient of micro-batches `m` with `m % N == r`, every process receives all
//! of them ([`Coordinator::gather`]) and sums them **in micro-batch order**, weighted by their
//! sizes — the same sum, in the same order, that a single process (`train` without
//! `--processes`) does. Float addition is not associative, so a reduction whose order followed
//! the process count (a ring or tree all-reduce, or summing per-process partial sums) would
//! differ in the last bits between 4 and 2 processes; this one does not, and every process
//! applies the identical update, so the replicas never drift apart.
//!
//! # Cost (a demo: correctness over speed)
//! One gather per step through etcd: each process puts one key holding its micro-batches'
//! gradients (582 `f32` + 12 bytes each, 2.3 KiB; 8 micro-batches are 18.7 KiB in all) and
//! reads everyone's, an all-gather, so each process downloads the whole 18.7 KiB every step
//! where a ring all-reduce would move about twice the model size per process without the
//! coordination service in the path. The manager adds one more exchange per step (the agreed
//! save decision and preemption). The keys stay in etcd until the job's next run starts (the
//! etcd coordinator's session cleanup): about 19 KiB per step, 19 MB for 1,000 steps.
//!
//! # Checkpoint layout
//! Each process saves its rows ([`shard_rows`]) of each parameter as an [`ArrayShard`] of the
//! array `params.<name>` (items `params.<name>.shard-<rank>`); the primary also saves the
//! training state (`train_state`, as a single process does) and Adam's moments as a JSON item
//! (`opt_state`: `{"mu": {name: [values…]}, "nu": {…}}`, each `f32` written as the shortest
//! decimal that reads back to the same bits). A resume with any process count reads each
//! process's rows with `restore_array_slice` and assembles the replicas with one gather; a single
//! process reads the whole arrays.

use crate::checkpoint::AnyError;
use crate::model::Params;
use crate::trainer::{MicroGrad, Trainer, MICRO_BATCHES};
use ckpt_manager::coordination::Coordinator;
use ckpt_manager::{ArrayShard, CheckpointManager, Composite, Step};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// How long a process waits for the others at each exchange (seconds). A process known to be
/// gone (its etcd lease ended, 10 s after it died) fails the wait sooner, naming it.
pub const EXCHANGE_TIMEOUT_SECS: u64 = 300;

/// This process's place in a data-parallel job: its coordinator, rank and size.
#[derive(Debug, Clone)]
pub struct Dp {
    /// The job's coordinator (also given to the manager).
    pub coordinator: Arc<dyn Coordinator>,
    /// This process's index.
    pub rank: usize,
    /// The number of processes.
    pub size: usize,
}

impl Dp {
    /// The job of `coordinator` (its index and count).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub fn new(coordinator: Arc<dyn Coordinator>) -> Dp {
        Dp {
            rank: coordinator.process_index(),
            size: coordinator.process_count(),
            coordinator,
        }
    }

    /// Joins the job named `job` (the program passes `launch::job_name` of its `--dir`) on the
    /// etcd at `endpoints` as process `rank` of `size`, waiting (at most 300 s) for every
    /// process to join.
    ///
    /// # Errors
    /// From `EtcdCoordinator::connect`: etcd unreachable, a process that does not join, the
    /// rank held by a live process of another run of the job.
    #[cfg(feature = "etcd")]
    pub fn connect(
        endpoints: &[String],
        rank: usize,
        size: usize,
        job: &str,
    ) -> Result<Dp, AnyError> {
        use ckpt_manager::coordination::{EtcdCoordinator, EtcdOptions};
        let options = EtcdOptions::new(endpoints.iter().cloned(), rank, size).job(job);
        let c = EtcdCoordinator::connect(options)?;
        Ok(Dp::new(Arc::new(c)))
    }

    /// Without the `etcd` feature there is no coordinator to join with.
    ///
    /// # Errors
    /// Always: a message saying how to build with it.
    #[cfg(not(feature = "etcd"))]
    pub fn connect(_: &[String], _: usize, _: usize, _: &str) -> Result<Dp, AnyError> {
        Err(
            "this train program was built without the `etcd` feature, which multi-process runs \
             need: build it with `--features etcd` (needs protoc)"
                .into(),
        )
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(EXCHANGE_TIMEOUT_SECS)
    }

    /// One data-parallel step: this process's micro-batches' gradients, exchanged with every
    /// process's, summed in micro-batch order, applied; returns the batch's loss (the same, and
    /// the same update, on every process).
    ///
    /// # Errors
    /// From the exchange (a process that fails or does not come, naming it); a contribution
    /// that does not decode or leaves a micro-batch out.
    pub fn train_step(&self, trainer: &mut Trainer<'_>) -> Result<f32, AnyError> {
        let step = trainer.state.step;
        let mine = trainer.micro_grads(|m| m % self.size == self.rank);
        let name = format!("train.grad-{step}");
        let all = self
            .coordinator
            .gather(&name, &encode_grads(&mine), self.timeout())?;
        let like = trainer.params.zeros_like();
        let mut grads = Vec::with_capacity(MICRO_BATCHES);
        for (i, bytes) in all {
            grads.extend(
                decode_grads(&bytes, &like)
                    .map_err(|e| format!("{name}: process {i}'s gradients: {e}"))?,
            );
        }
        grads.sort_by_key(|g| g.index);
        trainer.check_micro_grads(&grads)?;
        Ok(trainer.apply_micro_grads(&grads))
    }

    /// This process's part of a step: its rows of every parameter (as array shards) and, on
    /// the primary, the training state and Adam's moments (JSON).
    ///
    /// # Errors
    /// A moment that is not finite (JSON has no such number), a shard that cannot be built.
    pub fn items(&self, trainer: &Trainer<'_>) -> Result<Composite<'static>, AnyError> {
        let mut items = Composite::new();
        for (name, view) in trainer.params.tensors() {
            let shape = view.shape().to_vec();
            let rows = shard_rows(shape[0], self.size, self.rank);
            if rows.is_empty() {
                continue;
            }
            let values: Vec<f32> = view
                .slice_axis(ndarray::Axis(0), ndarray::Slice::from(rows.clone()))
                .iter()
                .copied()
                .collect();
            let mut local = shape.clone();
            local[0] = rows.len();
            let mut offset = vec![0; shape.len()];
            offset[0] = rows.start;
            let data = ckpt_manager::handlers::Tensor::from_slice::<f32>(local, &values)?;
            let shard = ArrayShard::new(shape, offset, data)?;
            items = items.array_shard(&param_array(name), self.rank, &shard);
        }
        if self.coordinator.is_primary() {
            items = items
                .json_value(
                    crate::checkpoint::TRAIN_STATE,
                    serde_json::to_value(&trainer.state)?,
                )
                .json_value(
                    crate::checkpoint::OPT_STATE,
                    json!({"mu": moments_json(&trainer.adam.m)?, "nu": moments_json(&trainer.adam.v)?}),
                );
        }
        Ok(items)
    }

    /// Every parameter of a sharded `step`, whole on every process: each process reads its
    /// rows with `restore_array_slice`, and one gather gives each the others' rows.
    ///
    /// # Errors
    /// From the reads (a missing or corrupt shard), the exchange, or rows of the wrong length.
    pub fn read_params(
        &self,
        mngr: &CheckpointManager,
        step: Step,
        like: &Params,
    ) -> Result<Params, AnyError> {
        let mut mine: Vec<u8> = Vec::new();
        for (name, view) in like.tensors() {
            let shape = view.shape();
            let rows = shard_rows(shape[0], self.size, self.rank);
            if rows.is_empty() {
                continue;
            }
            let mut offset = vec![0; shape.len()];
            offset[0] = rows.start;
            let mut box_shape = shape.to_vec();
            box_shape[0] = rows.len();
            let t =
                mngr.restore_array_slice(Some(step), &param_array(name), &offset, &box_shape)?;
            for v in t.to_vec::<f32>()? {
                mine.extend_from_slice(&v.to_le_bytes());
            }
        }
        let name = format!("train.resume-{step}");
        let all = self.coordinator.gather(&name, &mine, self.timeout())?;
        let mut out = like.clone();
        let mut readers: Vec<(usize, &[u8])> =
            all.iter().map(|(i, b)| (*i, b.as_slice())).collect();
        readers.sort_by_key(|r| r.0);
        for (i, bytes) in &mut readers {
            for (_, mut dst) in out.tensors_mut() {
                let shape = dst.shape().to_vec();
                let rows = shard_rows(shape[0], self.size, *i);
                let per_row: usize = shape[1..].iter().product();
                let n = rows.len() * per_row * 4;
                if bytes.len() < n {
                    return Err(format!("{name}: process {i}'s rows are short").into());
                }
                let (head, rest) = bytes.split_at(n);
                *bytes = rest;
                let mut part =
                    dst.slice_axis_mut(ndarray::Axis(0), ndarray::Slice::from(rows.clone()));
                for (d, c) in part.iter_mut().zip(head.chunks_exact(4)) {
                    *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            if !bytes.is_empty() {
                return Err(
                    format!("{name}: process {i} sent {} bytes too many", bytes.len()).into(),
                );
            }
        }
        Ok(out)
    }
}

/// The array name of parameter `name` in a sharded checkpoint: `params.<name>`.
pub fn param_array(name: &str) -> String {
    format!("{}.{name}", crate::checkpoint::PARAMS)
}

/// The rows (first dimension, of `n`) process `rank` of `size` holds in a checkpoint: the
/// `rank`-th of `size` near-equal contiguous parts (empty for some when `n < size`).
pub fn shard_rows(n: usize, size: usize, rank: usize) -> std::ops::Range<usize> {
    n * rank / size..n * (rank + 1) / size
}

/// Every parameter of a sharded `step`, whole (one process reading every shard).
///
/// # Errors
/// From `restore_array_slice`.
pub fn read_params_whole(
    mngr: &CheckpointManager,
    step: Step,
    like: &Params,
) -> Result<Params, AnyError> {
    let mut out = like.clone();
    for (name, mut dst) in out.tensors_mut() {
        let shape = dst.shape().to_vec();
        let t = mngr.restore_array_slice(
            Some(step),
            &param_array(name),
            &vec![0; shape.len()],
            &shape,
        )?;
        for (d, v) in dst.iter_mut().zip(t.to_vec::<f32>()?) {
            *d = v;
        }
    }
    Ok(out)
}

/// Adam's moments `p` as JSON: `{name: [values, C order]}`.
fn moments_json(p: &Params) -> Result<Value, AnyError> {
    let mut m = Map::new();
    for (name, view) in p.tensors() {
        let mut values = Vec::with_capacity(view.len());
        for &v in view.iter() {
            if !v.is_finite() {
                return Err(format!("Adam moment {name} holds {v}, which JSON cannot hold").into());
            }
            values.push(Value::from(f64::from(v)));
        }
        m.insert(name.to_string(), Value::Array(values));
    }
    Ok(Value::Object(m))
}

/// Moments read back from [`moments_json`]'s form, shaped like `like`.
///
/// # Errors
/// A message naming the tensor when one is missing, of another length, or not numbers.
pub fn moments_from_json(v: &Value, like: &Params, what: &str) -> Result<Params, AnyError> {
    let mut out = like.clone();
    for (name, mut dst) in out.tensors_mut() {
        let values = v
            .get(name)
            .and_then(Value::as_array)
            .ok_or_else(|| format!("opt_state: {what} has no array {name:?}"))?;
        if values.len() != dst.len() {
            return Err(format!(
                "opt_state: {what}.{name} has {} values, this model needs {}",
                values.len(),
                dst.len()
            )
            .into());
        }
        for (d, x) in dst.iter_mut().zip(values) {
            *d = x
                .as_f64()
                .ok_or_else(|| format!("opt_state: {what}.{name} holds {x}, not a number"))?
                as f32;
        }
    }
    Ok(out)
}

/// The wire form of micro-batch gradients: per micro-batch its index and size (`u32` LE), its
/// loss and its gradient's values in [`Params::tensors`] order (`f32` LE, bit for bit).
fn encode_grads(grads: &[MicroGrad]) -> Vec<u8> {
    let mut out = Vec::new();
    for g in grads {
        out.extend_from_slice(&(g.index as u32).to_le_bytes());
        out.extend_from_slice(&(g.examples as u32).to_le_bytes());
        out.extend_from_slice(&g.loss.to_le_bytes());
        for (_, t) in g.grad.tensors() {
            for v in t.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// Micro-batch gradients from [`encode_grads`]' form, shaped like `like`.
fn decode_grads(mut bytes: &[u8], like: &Params) -> Result<Vec<MicroGrad>, String> {
    let floats: usize = like.tensors().iter().map(|(_, t)| t.len()).sum();
    let each = 12 + 4 * floats;
    if !bytes.len().is_multiple_of(each) {
        return Err(format!(
            "{} bytes is not a whole number of micro-batches of {each} bytes",
            bytes.len()
        ));
    }
    let word = |b: &[u8], i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (one, rest) = bytes.split_at(each);
        bytes = rest;
        let index = u32::from_le_bytes(word(one, 0)) as usize;
        let examples = u32::from_le_bytes(word(one, 4)) as usize;
        let loss = f32::from_le_bytes(word(one, 8));
        let mut grad = like.clone();
        let mut at = 12;
        for (_, mut t) in grad.tensors_mut() {
            for v in t.iter_mut() {
                *v = f32::from_le_bytes(word(one, at));
                at += 4;
            }
        }
        out.push(MicroGrad {
            index,
            examples,
            loss,
            grad,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_rows_cover_each_row_once() {
        for n in [1, 6, 11, 32] {
            for size in 1..=MICRO_BATCHES {
                let all: Vec<usize> = (0..size).flat_map(|r| shard_rows(n, size, r)).collect();
                assert_eq!(all, (0..n).collect::<Vec<_>>(), "n {n} size {size}");
            }
        }
    }
}
