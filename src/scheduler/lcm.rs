//! LCM (diffusers' LCMScheduler): each step predicts the clean latents with the consistency
//! boundary condition and re-noises them to the next timestep; the output is `denoised`.

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, StepOutput, clip_x0, ddpm_add_noise, missing_noise, x0_and_eps, x0_clip_range};
use crate::error::Result;

pub struct Lcm {
    alphas_cumprod: Vec<f32>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    prediction: Prediction,
    clip_range: Option<f64>,
    timestep_scaling: f64,
}

impl Lcm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let original = config.original_inference_steps;
        let k = config.num_train_timesteps / original;
        // The distillation schedule, descending; `steps` evenly spaced entries of it.
        let origin: Vec<usize> = (1..=original).rev().map(|i| i * k - 1).collect();
        let steps = steps.min(original);
        let timesteps = (0..steps).map(|i| origin[(i * origin.len()) / steps] as f64).collect();
        Ok(Self {
            final_alpha: if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] as f64 },
            alphas_cumprod,
            timesteps,
            prediction: config.prediction()?,
            clip_range: x0_clip_range(config, "LCM")?,
            timestep_scaling: config.timestep_scaling,
        })
    }
}

impl Scheduler for Lcm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn needs_noise(&self, i: usize) -> bool {
        i + 1 < self.timesteps.len()
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let t = self.timesteps[i];
        let a = self.alphas_cumprod[t as usize] as f64;
        let (x0, _) = x0_and_eps(self.prediction, model_output, sample.clone(), a);
        let x0 = clip_x0(x0, self.clip_range);
        let scaled = t * self.timestep_scaling;
        let sigma_data2 = 0.25;
        let c_skip = sigma_data2 / (scaled * scaled + sigma_data2);
        let c_out = scaled / (scaled * scaled + sigma_data2).sqrt();
        let denoised = x0 * c_out + sample * c_skip;
        let prev = match self.timesteps.get(i + 1) {
            Some(&next) => {
                let a_prev = if next >= 0.0 { self.alphas_cumprod[next as usize] as f64 } else { self.final_alpha };
                ddpm_add_noise(denoised.clone(), noise.ok_or_else(|| missing_noise("LCM"))?, a_prev)
            }
            None => denoised.clone(),
        };
        Ok(StepOutput { prev_sample: prev, denoised })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        ddpm_add_noise(original, noise, self.alphas_cumprod[self.timesteps[i] as usize] as f64)
    }
}
