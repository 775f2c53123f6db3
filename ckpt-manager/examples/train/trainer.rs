//! The training loop's state and one optimizer update at a time.
//!
//! A *step* is one Adam update on one mini-batch. The examples are visited in a fresh random
//! order each epoch; the order of an epoch is drawn from a [`SplitMix64`] whose state at the
//! start of the epoch is part of [`TrainState`], so a resumed run redraws the same order and
//! continues at the same position: resuming is exact, bit for bit.

use crate::data::Data;
use crate::model::{self, Params};
use crate::optim::{Adam, AdamConfig};
use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Width of the hidden layer.
pub const HIDDEN: usize = 32;
/// Examples per mini-batch (the last batch of an epoch may be smaller).
pub const BATCH_SIZE: usize = 32;
/// Micro-batches per mini-batch: the units of gradient work a data-parallel run shares out
/// (micro-batch `m` to process `m % processes`), so at most this many processes.
pub const MICRO_BATCHES: usize = 8;

/// The loss and mean gradient of one micro-batch of the current mini-batch.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroGrad {
    /// The micro-batch's index, `0..MICRO_BATCHES`.
    pub index: usize,
    /// Its number of examples.
    pub examples: usize,
    /// Its mean cross-entropy.
    pub loss: f32,
    /// Its mean gradient.
    pub grad: Params,
}

/// The range (within a mini-batch of `n` examples) of micro-batch `m`: the `m`-th of
/// [`MICRO_BATCHES`] near-equal contiguous parts (empty when `n < MICRO_BATCHES` for some).
pub fn micro_range(n: usize, m: usize) -> std::ops::Range<usize> {
    n * m / MICRO_BATCHES..n * (m + 1) / MICRO_BATCHES
}

/// RNG stream for the parameter initialisation.
const INIT_STREAM: u64 = 1;
/// RNG stream for the data order.
const ORDER_STREAM: u64 = 2;

/// Everything besides the tensors needed to continue training exactly: saved as a JSON item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer updates done so far (also Adam's update count).
    pub step: u64,
    /// The current epoch, from 0.
    pub epoch: u64,
    /// Position in the current epoch's order of the next example to train on.
    pub position: u64,
    /// State of the data-order RNG at the start of the current epoch: the epoch's order is
    /// drawn from it, and the next epoch's from where that draw leaves it.
    pub epoch_rng_state: u64,
    /// The seed the run started from (initial parameters and the first epoch's order).
    pub data_seed: u64,
    /// Hidden-layer width the parameters were made for.
    pub hidden: u64,
    /// Mini-batch size.
    pub batch_size: u64,
    /// Adam's hyperparameters.
    pub adam: AdamConfig,
}

/// A model being trained: parameters, optimizer, state and the current epoch's order.
#[derive(Debug, Clone)]
pub struct Trainer<'d> {
    data: &'d Data,
    /// The network's parameters.
    pub params: Params,
    /// Adam's moments and hyperparameters.
    pub adam: Adam,
    /// Step, epoch, position and RNG state.
    pub state: TrainState,
    /// The current epoch's order of the training examples.
    order: Vec<usize>,
    /// The data-order RNG after drawing `order`: the next epoch's order comes from it.
    rng: SplitMix64,
}

impl<'d> Trainer<'d> {
    /// A fresh model for `data`, initialised from `seed`.
    pub fn new(data: &'d Data, seed: u64) -> Trainer<'d> {
        let params = Params::init(
            data.n_features(),
            HIDDEN,
            data.n_classes,
            &mut SplitMix64::stream(seed, INIT_STREAM),
        );
        let config = AdamConfig::default();
        let adam = Adam::new(config, &params);
        let state = TrainState {
            step: 0,
            epoch: 0,
            position: 0,
            epoch_rng_state: SplitMix64::stream(seed, ORDER_STREAM).state(),
            data_seed: seed,
            hidden: HIDDEN as u64,
            batch_size: BATCH_SIZE as u64,
            adam: config,
        };
        let (order, rng) = draw_order(state.epoch_rng_state, data.n_train());
        Trainer {
            data,
            params,
            adam,
            state,
            order,
            rng,
        }
    }

    /// A model continuing from saved parts (as restored from a checkpoint).
    ///
    /// # Errors
    /// A message when the parts do not fit together or do not fit `data` (another model size,
    /// another batch size, a position past the end of the epoch).
    pub fn from_parts(
        data: &'d Data,
        params: Params,
        m: Params,
        v: Params,
        state: TrainState,
    ) -> Result<Trainer<'d>, String> {
        let expect = Params::init(
            data.n_features(),
            HIDDEN,
            data.n_classes,
            &mut SplitMix64::from_state(0),
        );
        for (what, p) in [
            ("parameters", &params),
            ("first moments", &m),
            ("second moments", &v),
        ] {
            for ((name, got), (_, want)) in p.tensors().iter().zip(expect.tensors().iter()) {
                if got.shape() != want.shape() {
                    return Err(format!(
                        "{what}: tensor {name} has shape {:?}, this model needs {:?}",
                        got.shape(),
                        want.shape()
                    ));
                }
            }
        }
        if state.hidden != HIDDEN as u64 || state.batch_size != BATCH_SIZE as u64 {
            return Err(format!(
                "the checkpoint was trained with hidden={} batch_size={}, this program uses hidden={HIDDEN} batch_size={BATCH_SIZE}",
                state.hidden, state.batch_size
            ));
        }
        if state.position >= data.n_train() as u64 {
            return Err(format!(
                "position {} is past the end of an epoch of {} examples",
                state.position,
                data.n_train()
            ));
        }
        let (order, rng) = draw_order(state.epoch_rng_state, data.n_train());
        let adam = Adam {
            config: state.adam,
            m,
            v,
        };
        Ok(Trainer {
            data,
            params,
            adam,
            state,
            order,
            rng,
        })
    }

    /// Trains on the next mini-batch (one Adam update) and returns its loss before the update.
    ///
    /// The batch's gradient is the fixed-order sum of its [`MICRO_BATCHES`] micro-batches'
    /// gradients ([`Trainer::micro_grads`], [`Trainer::apply_micro_grads`]), the same
    /// arithmetic a data-parallel run of any number of processes does (each process some of
    /// the micro-batches), so both give bit-identical parameters.
    pub fn train_step(&mut self) -> f32 {
        let grads = self.micro_grads(|_| true);
        self.apply_micro_grads(&grads)
    }

    /// The example range of the current mini-batch within the epoch's order.
    fn batch_range(&self) -> std::ops::Range<usize> {
        let n = self.order.len();
        let start = (self.state.position as usize).min(n);
        start..(start + BATCH_SIZE).min(n)
    }

    /// The loss and gradient of each micro-batch `m` of the current mini-batch for which
    /// `mine(m)` holds (empty micro-batches are left out), ascending by `m`. Micro-batch `m`
    /// is the `m`-th of [`MICRO_BATCHES`] near-equal contiguous parts of the batch.
    pub fn micro_grads(&self, mine: impl Fn(usize) -> bool) -> Vec<MicroGrad> {
        let batch = self.batch_range();
        let n = batch.len();
        let mut out = Vec::new();
        for m in (0..MICRO_BATCHES).filter(|&m| mine(m)) {
            let part = micro_range(n, m);
            if part.is_empty() {
                continue;
            }
            let indices = &self.order[batch.start + part.start..batch.start + part.end];
            let (x, y) = self.data.train_batch(indices);
            let (loss, grad) = model::loss_and_grad(&self.params, &x, &y);
            out.push(MicroGrad {
                index: m,
                examples: part.len(),
                loss,
                grad,
            });
        }
        out
    }

    /// Whether `grads` are exactly the non-empty micro-batches of the current mini-batch, each
    /// once, ascending, with their sizes (what [`Trainer::apply_micro_grads`] needs).
    ///
    /// # Errors
    /// A message naming the first micro-batch that is missing, repeated or of the wrong size.
    pub fn check_micro_grads(&self, grads: &[MicroGrad]) -> Result<(), String> {
        let n = self.batch_range().len();
        let want: Vec<(usize, usize)> = (0..MICRO_BATCHES)
            .map(|m| (m, micro_range(n, m).len()))
            .filter(|&(_, len)| len > 0)
            .collect();
        let got: Vec<(usize, usize)> = grads.iter().map(|g| (g.index, g.examples)).collect();
        if got != want {
            return Err(format!(
                "step {}: the micro-batch gradients are (index, examples) {got:?}, the batch needs {want:?}",
                self.state.step
            ));
        }
        Ok(())
    }

    /// Applies one Adam update with the gradient of the current mini-batch made of `grads` (as
    /// [`Trainer::check_micro_grads`] accepts): each micro-batch's mean gradient weighted by its
    /// share of the batch, summed in the order given; moves to the next batch and returns the
    /// batch's loss (weighted the same way).
    pub fn apply_micro_grads(&mut self, grads: &[MicroGrad]) -> f32 {
        let batch = self.batch_range();
        let n = batch.len();
        let mut total = self.params.zeros_like();
        let mut loss = 0.0_f32;
        for g in grads {
            let w = g.examples as f32 / n as f32;
            loss += w * g.loss;
            for ((_, mut acc), (_, part)) in total.tensors_mut().into_iter().zip(g.grad.tensors()) {
                acc.zip_mut_with(&part, |a, &b| *a += w * b);
            }
        }
        self.state.step += 1;
        self.adam.update(&mut self.params, &total, self.state.step);
        self.state.position = batch.end as u64;
        if batch.end == self.order.len() {
            let n = self.order.len();
            self.state.epoch += 1;
            self.state.position = 0;
            self.state.epoch_rng_state = self.rng.state();
            (self.order, self.rng) = draw_order(self.state.epoch_rng_state, n);
        }
        loss
    }

    /// Validation loss and accuracy of the current parameters.
    pub fn validate(&self) -> (f32, f32) {
        model::evaluate(&self.params, &self.data.x_val, &self.data.y_val)
    }
}

/// The order of an epoch drawn from RNG state `state`, and the RNG after the draw.
fn draw_order(state: u64, n: usize) -> (Vec<usize>, SplitMix64) {
    let mut rng = SplitMix64::from_state(state);
    let order = rng.permutation(n);
    (order, rng)
}
