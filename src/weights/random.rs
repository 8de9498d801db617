//! Random weights for the full-size configs: tests of the real wiring and benchmarks run without
//! downloading anything. Values are drawn on the device, so nothing large passes through the CPU.

use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::Distribution;

use super::TensorSource;
use crate::error::Result;

/// Answers every name with a tensor of the shape the model asks for: uniform in ±1/sqrt(fan_in)
/// for matrices and kernels (keeps activations in range through deep stacks), 1 for norm scales,
/// small noise for other vectors.
#[derive(Default)]
pub struct RandomSource {
    /// Shapes handed out, so `names` can list them and parameters can be counted.
    given: BTreeMap<String, Vec<usize>>,
}

impl RandomSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// Total parameters handed out so far.
    pub fn parameter_count(&self) -> usize {
        self.given.values().map(|s| s.iter().product::<usize>()).sum()
    }
}

impl TensorSource for RandomSource {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.given.get(name).cloned()
    }

    fn shape_for(&self, _name: &str, expected: &[usize]) -> Option<Vec<usize>> {
        Some(expected.to_vec())
    }

    fn names(&self) -> Vec<String> {
        self.given.keys().cloned().collect()
    }

    /// Only the asked rows are drawn (SD's token embedding would be one 145 MiB buffer).
    fn load_rows(&mut self, name: &str, shape: &[usize], rows: std::ops::Range<usize>, device: &Device) -> Result<Tensor<1>> {
        let mut part = shape.to_vec();
        part[0] = rows.len();
        let tensor = self.load(name, &part, device)?;
        self.given.insert(name.to_string(), shape.to_vec());
        Ok(tensor)
    }

    fn load(&mut self, name: &str, expected: &[usize], device: &Device) -> Result<Tensor<1>> {
        let n: usize = expected.iter().product();
        let fan_in: usize = expected.iter().skip(1).product::<usize>().max(1);
        let is_norm_scale = expected.len() == 1 && name.ends_with("weight") && name.contains("norm");
        let tensor = if is_norm_scale {
            Tensor::ones([n], device)
        } else if expected.len() == 1 {
            Tensor::random([n], Distribution::Uniform(-0.02, 0.02), device)
        } else {
            let k = 1.0 / (fan_in as f64).sqrt();
            Tensor::random([n], Distribution::Uniform(-k, k), device)
        };
        self.given.insert(name.to_string(), expected.to_vec());
        Ok(tensor)
    }
}
