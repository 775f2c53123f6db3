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
    pub fn train_step(&mut self) -> f32 {
        let n = self.order.len();
        let start = self.state.position as usize;
        let end = (start + BATCH_SIZE).min(n);
        let (x, y) = self.data.train_batch(&self.order[start..end]);
        let (loss, grad) = model::loss_and_grad(&self.params, &x, &y);
        self.state.step += 1;
        self.adam.update(&mut self.params, &grad, self.state.step);
        self.state.position = end as u64;
        if end == n {
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
