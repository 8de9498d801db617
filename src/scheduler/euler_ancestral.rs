//! Euler ancestral (diffusers' EulerAncestralDiscreteScheduler): an Euler step to σ_down, then
//! fresh noise of size σ_up.

use burn::prelude::*;

use super::euler::sigma_schedule;
use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, missing_noise, sigma_init_noise, sigma_x0};
use crate::error::Result;

pub struct EulerAncestral {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: Prediction,
}

impl EulerAncestral {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let spacing = config.spacing(Spacing::Linspace)?;
        let (timesteps, sigmas) = sigma_schedule(config, steps, spacing)?;
        Ok(Self { init_noise_sigma: sigma_init_noise(spacing, &sigmas), timesteps, sigmas, prediction: config.prediction()? })
    }
}

impl Scheduler for EulerAncestral {
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

    fn needs_noise(&self, _i: usize) -> bool {
        true
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let (from, to) = (self.sigmas[i], self.sigmas[i + 1]);
        let x0 = sigma_x0(self.prediction, model_output, sample.clone(), from);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let derivative = (sample.clone() - x0.clone()) / from;
        let noise = noise.ok_or_else(|| missing_noise("Euler ancestral"))?;
        let prev = sample + derivative * (down - from) + noise * up;
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.sigmas[i]
    }
}
