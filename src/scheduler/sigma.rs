//! What the sigma-parameterised samplers (Euler, Euler ancestral, LMS) share: their timesteps and
//! sigmas, the input scaling, the initial noise and img2img noising. Each sampler only supplies
//! its step.

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, interp, karras_sigmas, sigma_init_noise, sigma_to_t, sigma_x0, spaced_timesteps, train_sigmas};
use crate::error::Result;

/// Timesteps and sigmas (with a final 0) as diffusers lays them out for these samplers.
pub struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f64,
    pub prediction: Prediction,
}

impl SigmaSchedule {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let spacing = config.spacing(Spacing::Linspace)?;
        let train = train_sigmas(&config.alphas_cumprod()?);
        let mut timesteps = spaced_timesteps(spacing, steps, config);
        let mut sigmas: Vec<f64> = timesteps.iter().map(|&t| interp(t, &train)).collect();
        if config.use_karras_sigmas {
            let log: Vec<f64> = train.iter().map(|s| s.ln()).collect();
            sigmas = karras_sigmas(sigmas[sigmas.len() - 1], sigmas[0], steps);
            timesteps = sigmas.iter().map(|&s| sigma_to_t(s, &log)).collect();
        }
        sigmas.push(0.0);
        // diffusers stores both as f32.
        let sigmas: Vec<f64> = sigmas.into_iter().map(|s| s as f32 as f64).collect();
        let timesteps = timesteps.into_iter().map(|t| t as f32 as f64).collect();
        Ok(Self { init_noise_sigma: sigma_init_noise(spacing, &sigmas), timesteps, sigmas, prediction: config.prediction()? })
    }

    /// The predicted clean latents at step `i`.
    pub fn x0(&self, model_output: Tensor<4>, sample: Tensor<4>, i: usize) -> Tensor<4> {
        sigma_x0(self.prediction, model_output, sample, self.sigmas[i])
    }
}

/// One sampler's step rule over a [`SigmaSchedule`].
pub trait SigmaStep {
    /// Whether each step draws fresh noise.
    const NEEDS_NOISE: bool = false;
    fn step(&mut self, schedule: &SigmaSchedule, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput>;
}

/// A sigma sampler: the shared schedule plus its step rule.
pub struct SigmaSampler<S> {
    schedule: SigmaSchedule,
    rule: S,
}

impl<S: SigmaStep> SigmaSampler<S> {
    pub fn new(config: &SchedulerConfig, steps: usize, rule: S) -> Result<Self> {
        Ok(Self { schedule: SigmaSchedule::new(config, steps)?, rule })
    }
}

impl<S: SigmaStep> Scheduler for SigmaSampler<S> {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.schedule.sigmas)
    }

    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma
    }

    fn scale_model_input(&self, sample: Tensor<4>, i: usize) -> Tensor<4> {
        let sigma = self.schedule.sigmas[i];
        sample / (sigma * sigma + 1.0).sqrt()
    }

    fn needs_noise(&self, _i: usize) -> bool {
        S::NEEDS_NOISE
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput> {
        self.rule.step(&self.schedule, model_output, i, sample, noise)
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.schedule.sigmas[i]
    }
}
