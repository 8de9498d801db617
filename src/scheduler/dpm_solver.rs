//! DPM-Solver++(2M) (diffusers' DPMSolverMultistepScheduler with its SD defaults: dpmsolver++,
//! order 2, midpoint, lower order final, final sigma zero), with or without Karras sigmas.

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, arange_down, ddpm_add_noise, interp, karras_sigmas, linspace, round_half_even, sigma_to_t, train_sigmas};
use crate::error::Result;

pub struct DpmSolver {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    prediction: Prediction,
    /// The previous step's x0 prediction (second-order history).
    previous: Option<Tensor<4>>,
}

impl DpmSolver {
    pub fn new(config: &SchedulerConfig, steps: usize, karras: bool) -> Result<Self> {
        let alphas_cumprod = config.alphas_cumprod()?;
        let train = config.num_train_timesteps;
        let mut timesteps: Vec<f64> = match config.spacing(Spacing::Linspace)? {
            Spacing::Linspace => {
                let mut t: Vec<f64> = linspace(0.0, (train - 1) as f64, steps + 1).into_iter().map(round_half_even).rev().collect();
                t.pop();
                t
            }
            Spacing::Leading => {
                let ratio = train / (steps + 1);
                (1..=steps).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
            }
            Spacing::Trailing => arange_down(train as f64, train as f64 / steps as f64).into_iter().map(|t| round_half_even(t) - 1.0).collect(),
        };
        let all = train_sigmas(&alphas_cumprod);
        let mut sigmas: Vec<f64> = if karras {
            let log: Vec<f64> = all.iter().map(|s| s.ln()).collect();
            let s = karras_sigmas(all[0], all[all.len() - 1], steps);
            timesteps = s.iter().map(|&x| round_half_even(sigma_to_t(x, &log))).collect();
            s
        } else {
            timesteps.iter().map(|&t| interp(t, &all)).collect()
        };
        sigmas.push(0.0);
        let sigmas = sigmas.into_iter().map(|s| s as f32 as f64).collect();
        Ok(Self { timesteps, sigmas, prediction: config.prediction()?, previous: None })
    }

    /// (α_t, σ_t) of the VP parameterisation for a sigma.
    fn alpha_sigma(sigma: f64) -> (f64, f64) {
        let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
        (alpha, sigma * alpha)
    }
}

impl Scheduler for DpmSolver {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, _noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let (alpha_s0, sigma_s0) = Self::alpha_sigma(self.sigmas[i]);
        let x0 = match self.prediction {
            Prediction::Epsilon => (sample.clone() - model_output * sigma_s0) / alpha_s0,
            Prediction::VPrediction => sample.clone() * alpha_s0 - model_output * sigma_s0,
            Prediction::Sample => model_output,
        };
        let next = self.sigmas[i + 1];
        // Final sigma 0: the step lands on the x0 prediction (first order, exp(-h) = 0).
        let prev = if next == 0.0 {
            x0.clone()
        } else {
            let (alpha_t, sigma_t) = Self::alpha_sigma(next);
            let lambda = |a: f64, s: f64| a.ln() - s.ln();
            let h = lambda(alpha_t, sigma_t) - lambda(alpha_s0, sigma_s0);
            let first = sample * (sigma_t / sigma_s0) - x0.clone() * (alpha_t * ((-h).exp() - 1.0));
            match &self.previous {
                Some(m1) => {
                    let (alpha_s1, sigma_s1) = Self::alpha_sigma(self.sigmas[i - 1]);
                    let h0 = lambda(alpha_s0, sigma_s0) - lambda(alpha_s1, sigma_s1);
                    let d1 = (x0.clone() - m1.clone()) * (h / h0);
                    first - d1 * (0.5 * alpha_t * ((-h).exp() - 1.0))
                }
                _ => first,
            }
        };
        self.previous = Some(x0.clone());
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        // diffusers: α_t·x + σ_t·ε at this step's sigma (equal to DDPM noising at ᾱ = α_t²).
        let (alpha, _) = Self::alpha_sigma(self.sigmas[i]);
        ddpm_add_noise(original, noise, alpha * alpha)
    }
}
