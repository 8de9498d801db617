//! Euler (diffusers' EulerDiscreteScheduler; also SD-Turbo's one-step sampler, trailing spacing).

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, interp, karras_sigmas, sigma_init_noise, sigma_to_t, sigma_x0, spaced_timesteps, train_sigmas};
use crate::error::Result;

/// Timesteps and sigmas (with a final 0) of the sigma samplers: Euler, Euler ancestral, LMS.
pub fn sigma_schedule(config: &SchedulerConfig, steps: usize, spacing: Spacing) -> Result<(Vec<f64>, Vec<f64>)> {
    let train = train_sigmas(&config.alphas_cumprod()?);
    let mut timesteps = spaced_timesteps(spacing, steps, config);
    let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
    if config.use_karras_sigmas {
        let log: Vec<f64> = train.iter().map(|s| s.ln()).collect();
        sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
        timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log)).collect();
    }
    // diffusers stores sigmas as f32.
    sigmas.push(0.0);
    let sigmas = sigmas.into_iter().map(|s| s as f32 as f64).collect();
    let timesteps = timesteps.into_iter().map(|t| t as f32 as f64).collect();
    Ok((timesteps, sigmas))
}

pub struct Euler {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: Prediction,
}

impl Euler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let spacing = config.spacing(Spacing::Linspace)?;
        let (timesteps, sigmas) = sigma_schedule(config, steps, spacing)?;
        Ok(Self { init_noise_sigma: sigma_init_noise(spacing, &sigmas), timesteps, sigmas, prediction: config.prediction()? })
    }
}

impl Scheduler for Euler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<4>, i: usize) -> Tensor<4> {
        sample / (self.sigmas[i] * self.sigmas[i] + 1.0).sqrt()
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, _noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let sigma = self.sigmas[i];
        let x0 = sigma_x0(self.prediction, model_output, sample.clone(), sigma);
        let derivative = (sample.clone() - x0.clone()) / sigma;
        let prev = sample + derivative * (self.sigmas[i + 1] - sigma);
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.sigmas[i]
    }
}
