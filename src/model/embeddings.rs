//! Timestep embeddings: diffusers' `Timesteps` (sinusoidal) and `TimestepEmbedding` (two linears).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::silu;

use super::linear;
use crate::error::{Error, Result};
use crate::weights::WeightLoader;

/// Sinusoidal embedding of `timesteps` [B] into [B, dim], as diffusers' `get_timestep_embedding`
/// (max_period 10000). The frequencies are computed in f32 exactly as torch does.
pub fn timestep_embedding(timesteps: Tensor<1>, dim: usize, flip_sin_to_cos: bool, freq_shift: f64) -> Result<Tensor<2>> {
    if !dim.is_multiple_of(2) {
        return Err(Error::UnsupportedConfig(format!("odd timestep embedding size {dim}")));
    }
    let half = dim / 2;
    let device = timesteps.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = -(10000f32.ln()) * i as f32;
            (exponent / (half as f32 - freq_shift as f32)).exp()
        })
        .collect();
    // Explicitly f32 (the device may default to f16): torch computes the frequencies in f32.
    let freqs = Tensor::<1>::from_data(TensorData::new(freqs, [half]), (&device, burn::tensor::DType::F32));
    let args = timesteps.cast(burn::tensor::FloatDType::F32).unsqueeze_dim::<2>(1) * freqs.unsqueeze_dim::<2>(0);
    let (sin, cos) = (args.clone().sin(), args.cos());
    Ok(if flip_sin_to_cos { Tensor::cat(vec![cos, sin], 1) } else { Tensor::cat(vec![sin, cos], 1) })
}

/// `TimestepEmbedding`: linear_1 → SiLU → linear_2, with the optional LCM guidance projection.
#[derive(Module, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
    cond_proj: Option<Linear>,
}

impl TimestepEmbedding {
    pub fn load(w: &mut WeightLoader, prefix: &str, d_in: usize, d_out: usize, cond_dim: Option<usize>) -> Result<Self> {
        Ok(Self {
            linear_1: w.linear(&format!("{prefix}.linear_1"), d_in, d_out, true)?,
            linear_2: w.linear(&format!("{prefix}.linear_2"), d_out, d_out, true)?,
            cond_proj: match cond_dim {
                Some(c) => Some(w.linear(&format!("{prefix}.cond_proj"), c, d_in, false)?),
                None => None,
            },
        })
    }

    pub fn forward(&self, sample: Tensor<2>, condition: Option<Tensor<2>>) -> Tensor<2> {
        let sample = match (&self.cond_proj, condition) {
            (Some(proj), Some(c)) => sample + linear::forward(proj, c),
            _ => sample,
        };
        linear::forward(&self.linear_2, silu(linear::forward(&self.linear_1, sample)))
    }
}
