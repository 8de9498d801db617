//! DDIM (diffusers' DDIMScheduler), deterministic at eta 0, stochastic above.

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, clip_x0, ddpm_add_noise, missing_noise, round_half_even, spaced_timesteps, x0_and_eps, x0_clip_range};
use crate::error::Result;

pub struct Ddim {
    alphas_cumprod: Vec<f32>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    step_ratio: usize,
    prediction: Prediction,
    clip_range: Option<f64>,
    eta: f64,
}

impl Ddim {
    pub fn new(config: &SchedulerConfig, steps: usize, eta: f64) -> Result<Self> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let final_alpha = if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] as f64 };
        Ok(Self {
            timesteps: spaced_timesteps(config.spacing(Spacing::Leading)?, steps, config).into_iter().map(round_half_even).collect(),
            step_ratio: config.num_train_timesteps / steps,
            prediction: config.prediction()?,
            clip_range: x0_clip_range(config, "DDIM")?,
            alphas_cumprod,
            final_alpha,
            eta,
        })
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 { self.alphas_cumprod[t as usize] as f64 } else { self.final_alpha }
    }
}

impl Scheduler for Ddim {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn needs_noise(&self, _i: usize) -> bool {
        self.eta > 0.0
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let t = self.timesteps[i] as i64;
        let (a, a_prev) = (self.alpha(t), self.alpha(t - self.step_ratio as i64));
        let (x0, eps) = x0_and_eps(self.prediction, model_output, sample, a);
        let x0 = clip_x0(x0, self.clip_range);
        let variance = (1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev);
        let std = self.eta * variance.sqrt();
        let mut prev = x0.clone() * a_prev.sqrt() + eps * (1.0 - a_prev - std * std).sqrt();
        if self.eta > 0.0 {
            prev = prev + noise.ok_or_else(|| missing_noise("DDIM"))? * std;
        }
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        ddpm_add_noise(original, noise, self.alpha(self.timesteps[i] as i64))
    }
}
