//! The model: a multilayer perceptron with one hidden `tanh` layer and a softmax output,
//! `p(class | x) = softmax(tanh(x·W1 + b1)·W2 + b2)`, trained on the mean cross-entropy.
//!
//! Everything is `f32` and computed in a fixed order on one thread, so the same parameters and
//! batch always give bit-identical losses and gradients.

use crate::rng::SplitMix64;
use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD, Axis, Zip};

/// The parameters of the network (and, with the same shapes, anything kept per parameter such as
/// the optimizer's moments or the gradients).
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Input → hidden weights, `[n_features, hidden]`.
    pub w1: Array2<f32>,
    /// Hidden biases, `[hidden]`.
    pub b1: Array1<f32>,
    /// Hidden → output weights, `[hidden, n_classes]`.
    pub w2: Array2<f32>,
    /// Output biases, `[n_classes]`.
    pub b2: Array1<f32>,
}

impl Params {
    /// Glorot-uniform weights drawn from `rng`, zero biases.
    pub fn init(n_in: usize, hidden: usize, n_out: usize, rng: &mut SplitMix64) -> Params {
        let mut glorot = |rows: usize, cols: usize| {
            let a = (6.0 / (rows + cols) as f32).sqrt();
            Array2::from_shape_simple_fn((rows, cols), || (2.0 * rng.next_f32() - 1.0) * a)
        };
        let w1 = glorot(n_in, hidden);
        let w2 = glorot(hidden, n_out);
        Params {
            w1,
            b1: Array1::zeros(hidden),
            w2,
            b2: Array1::zeros(n_out),
        }
    }

    /// All zeros, with the shapes of `self`.
    pub fn zeros_like(&self) -> Params {
        Params {
            w1: Array2::zeros(self.w1.raw_dim()),
            b1: Array1::zeros(self.b1.raw_dim()),
            w2: Array2::zeros(self.w2.raw_dim()),
            b2: Array1::zeros(self.b2.raw_dim()),
        }
    }

    /// The tensors by name, in a fixed order (the names used in checkpoints).
    pub fn tensors(&self) -> [(&'static str, ArrayViewD<'_, f32>); 4] {
        [
            ("w1", self.w1.view().into_dyn()),
            ("b1", self.b1.view().into_dyn()),
            ("w2", self.w2.view().into_dyn()),
            ("b2", self.b2.view().into_dyn()),
        ]
    }

    /// The tensors by name, mutable, in the order of [`Params::tensors`].
    pub fn tensors_mut(&mut self) -> [(&'static str, ArrayViewMutD<'_, f32>); 4] {
        [
            ("w1", self.w1.view_mut().into_dyn()),
            ("b1", self.b1.view_mut().into_dyn()),
            ("w2", self.w2.view_mut().into_dyn()),
            ("b2", self.b2.view_mut().into_dyn()),
        ]
    }
}

/// The hidden activations and class probabilities for a batch `x` (`[batch, n_features]`).
pub fn forward(p: &Params, x: &Array2<f32>) -> (Array2<f32>, Array2<f32>) {
    let hidden = (x.dot(&p.w1) + &p.b1).mapv_into(f32::tanh);
    let mut probs = hidden.dot(&p.w2) + &p.b2;
    for mut row in probs.rows_mut() {
        let max = row.fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row.mapv_inplace(|v| v / sum);
    }
    (hidden, probs)
}

/// Mean cross-entropy of `probs` against the classes `y`.
fn cross_entropy(probs: &Array2<f32>, y: &[usize]) -> f32 {
    let total: f32 = y
        .iter()
        .enumerate()
        .map(|(i, &c)| -probs[[i, c]].max(f32::MIN_POSITIVE).ln())
        .sum();
    total / y.len() as f32
}

/// The mean cross-entropy loss on the batch (`x`, `y`) and its gradient with respect to `p`.
pub fn loss_and_grad(p: &Params, x: &Array2<f32>, y: &[usize]) -> (f32, Params) {
    let (hidden, probs) = forward(p, x);
    let loss = cross_entropy(&probs, y);

    // d loss / d logits = (softmax − one-hot) / batch.
    let scale = 1.0 / y.len() as f32;
    let mut d_logits = probs;
    for (i, &c) in y.iter().enumerate() {
        d_logits[[i, c]] -= 1.0;
    }
    d_logits.mapv_inplace(|v| v * scale);

    let w2 = hidden.t().dot(&d_logits);
    let b2 = d_logits.sum_axis(Axis(0));
    let mut d_pre = d_logits.dot(&p.w2.t());
    Zip::from(&mut d_pre)
        .and(&hidden)
        .for_each(|d, &h| *d *= 1.0 - h * h);
    let w1 = x.t().dot(&d_pre);
    let b1 = d_pre.sum_axis(Axis(0));
    (loss, Params { w1, b1, w2, b2 })
}

/// Mean cross-entropy and accuracy of the model on (`x`, `y`).
pub fn evaluate(p: &Params, x: &Array2<f32>, y: &[usize]) -> (f32, f32) {
    let (_, probs) = forward(p, x);
    let loss = cross_entropy(&probs, y);
    let correct = probs
        .rows()
        .into_iter()
        .zip(y)
        .filter(|(row, &c)| {
            // argmax, first index on ties
            let best = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                );
            best.0 == c
        })
        .count();
    (loss, correct as f32 / y.len() as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic gradient agrees with central finite differences (in f64 terms, loosely).
    #[test]
    fn gradient_matches_finite_differences() {
        let mut rng = SplitMix64::from_state(7);
        let p = Params::init(3, 4, 3, &mut rng);
        let x = Array2::from_shape_fn((5, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
        let y = [0, 2, 1, 2, 0];
        let (_, g) = loss_and_grad(&p, &x, &y);
        let eps = 1e-2_f32;
        for (k, (name, grad)) in g.tensors().into_iter().enumerate() {
            for (idx, &analytic) in grad.indexed_iter() {
                let bump = |delta: f32| {
                    let mut q = p.clone();
                    q.tensors_mut()[k].1[idx.clone()] += delta;
                    loss_and_grad(&q, &x, &y).0
                };
                let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
                assert!(
                    (numeric - analytic).abs() < 2e-3,
                    "{name}{idx:?}: numeric {numeric} vs analytic {analytic}"
                );
            }
        }
    }
}
