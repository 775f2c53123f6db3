//! The dataset: the red Wine Quality data (Cortez et al., 2009; UCI Machine Learning Repository),
//! 1,599 wines described by 11 physico-chemical measurements and rated 3–8 by tasters, as shipped
//! inside the `linfa-datasets` crate (feature `winequality`).
//!
//! The ratings become classes `0..=5` (rating minus the lowest rating). A fixed 20 % of the wines
//! is held out for validation; the split depends on a constant seed only, so every run, whatever
//! its `--seed`, is validated on the same wines. Features are standardised with the mean and
//! standard deviation of the training split.

use crate::rng::SplitMix64;
use ndarray::{Array1, Array2, Axis};

/// Seed of the train/validation split: a constant, so the split never changes.
const SPLIT_SEED: u64 = 0x5EED_5B11;

/// Fraction of the wines held out for validation.
const VALIDATION_FRACTION: f64 = 0.2;

/// The training and validation splits, standardised, as `f32`.
#[derive(Debug, Clone)]
pub struct Data {
    /// Training features, one row per wine, standardised.
    pub x_train: Array2<f32>,
    /// Training classes (`0..n_classes`).
    pub y_train: Vec<usize>,
    /// Validation features, standardised with the training statistics.
    pub x_val: Array2<f32>,
    /// Validation classes.
    pub y_val: Vec<usize>,
    /// Number of classes (distinct quality ratings from the lowest to the highest).
    pub n_classes: usize,
    /// The quality rating of class 0.
    pub lowest_rating: usize,
}

impl Data {
    /// Loads the red Wine Quality data shipped by `linfa-datasets`, splits and standardises it.
    pub fn wine_quality() -> Data {
        let ds = linfa_datasets::winequality();
        let ratings: Vec<usize> = ds.targets.iter().copied().collect();
        Data::from_arrays(&ds.records, &ratings)
    }

    /// Splits `records` (rows of features) with their integer `ratings` into a fixed training and
    /// validation split and standardises both with the training split's statistics.
    pub fn from_arrays(records: &Array2<f64>, ratings: &[usize]) -> Data {
        let n = records.nrows();
        assert_eq!(n, ratings.len(), "one rating per record");
        let lowest = ratings.iter().copied().min().unwrap_or(0);
        let highest = ratings.iter().copied().max().unwrap_or(0);

        let order = SplitMix64::from_state(SPLIT_SEED).permutation(n);
        let n_val = (n as f64 * VALIDATION_FRACTION).round() as usize;
        let (val_idx, train_idx) = order.split_at(n_val);
        // Keep each split in dataset order: the split is a set, the training order is shuffled
        // per epoch anyway.
        let mut train_idx = train_idx.to_vec();
        let mut val_idx = val_idx.to_vec();
        train_idx.sort_unstable();
        val_idx.sort_unstable();

        let train = records.select(Axis(0), &train_idx);
        let val = records.select(Axis(0), &val_idx);
        let mean = train
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(records.ncols()));
        let std = train
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 0.0 { s } else { 1.0 });
        let standardise =
            |x: Array2<f64>| -> Array2<f32> { ((x - &mean) / &std).mapv(|v| v as f32) };
        let labels = |idx: &[usize]| idx.iter().map(|&i| ratings[i] - lowest).collect::<Vec<_>>();

        Data {
            x_train: standardise(train),
            y_train: labels(&train_idx),
            x_val: standardise(val),
            y_val: labels(&val_idx),
            n_classes: highest - lowest + 1,
            lowest_rating: lowest,
        }
    }

    /// Number of features per example.
    pub fn n_features(&self) -> usize {
        self.x_train.ncols()
    }

    /// Number of training examples.
    pub fn n_train(&self) -> usize {
        self.x_train.nrows()
    }

    /// The training examples at `indices` (rows of the training split), as a batch.
    pub fn train_batch(&self, indices: &[usize]) -> (Array2<f32>, Vec<usize>) {
        let x = self.x_train.select(Axis(0), indices);
        let y = indices.iter().map(|&i| self.y_train[i]).collect();
        (x, y)
    }
}

/// Counts of each class in `labels` (for a one-line description of a split).
pub fn class_counts(labels: &[usize], n_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; n_classes];
    for &y in labels {
        counts[y] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_fixed_complete_and_standardised() {
        let d = Data::wine_quality();
        assert_eq!(
            (d.n_train(), d.x_val.nrows(), d.n_features()),
            (1279, 320, 11)
        );
        assert_eq!((d.n_classes, d.lowest_rating), (6, 3));
        assert_eq!(d.y_train.len() + d.y_val.len(), 1599);
        for col in d.x_train.columns() {
            let mean = col.mean().unwrap_or(f32::NAN);
            let std = col.std(0.0);
            assert!(
                mean.abs() < 1e-4 && (std - 1.0).abs() < 1e-3,
                "mean {mean} std {std}"
            );
        }
        // The split does not depend on anything but the data.
        assert_eq!(Data::wine_quality().x_val, d.x_val);
    }
}
