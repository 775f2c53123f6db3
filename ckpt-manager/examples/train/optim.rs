//! Adam (Kingma & Ba, 2015) with bias correction, the moments kept per parameter tensor.

use crate::model::Params;
use ndarray::Zip;

/// Adam's hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    /// Step size.
    pub learning_rate: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator for stability.
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            learning_rate: 5e-3,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
        }
    }
}

/// Adam's state: the first (`m`) and second (`v`) moment estimates, shaped like the parameters.
/// The update count is the training step, kept by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    /// Hyperparameters.
    pub config: AdamConfig,
    /// First moment (running mean of the gradients).
    pub m: Params,
    /// Second moment (running mean of the squared gradients).
    pub v: Params,
}

impl Adam {
    /// Fresh moments (zeros) for parameters shaped like `params`.
    pub fn new(config: AdamConfig, params: &Params) -> Adam {
        Adam {
            config,
            m: params.zeros_like(),
            v: params.zeros_like(),
        }
    }

    /// Applies update number `t` (1 for the first update) with gradient `grad` to `params`:
    /// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
    /// `p ← p − α·√(1−β2ᵗ)/(1−β1ᵗ) · m / (√v + ε)` (the paper's efficient form, §2).
    pub fn update(&mut self, params: &mut Params, grad: &Params, t: u64) {
        let c = self.config;
        let (b1, b2) = (c.beta1 as f32, c.beta2 as f32);
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        // Bias corrections computed in f64, then rounded once.
        let step =
            (c.learning_rate * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t))) as f32;
        let eps = c.epsilon as f32;
        let params = params.tensors_mut();
        let grads = grad.tensors();
        let ms = self.m.tensors_mut();
        let vs = self.v.tensors_mut();
        for (((p, g), m), v) in params.into_iter().zip(grads).zip(ms).zip(vs) {
            Zip::from(p.1)
                .and(&g.1)
                .and(m.1)
                .and(v.1)
                .for_each(|p, &g, m, v| {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= step * *m / (v.sqrt() + eps);
                });
        }
    }
}
