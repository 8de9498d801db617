//! LMS (diffusers' LMSDiscreteScheduler): linear multistep over up to 4 past derivatives, with
//! coefficients from integrating the Lagrange basis polynomials (exact Gauss–Legendre quadrature;
//! diffusers uses scipy's quad on the same polynomials).

use burn::prelude::*;

use super::euler::sigma_schedule;
use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, sigma_init_noise, sigma_x0};
use crate::error::Result;

pub struct Lms {
    timesteps: Vec<f64>,
    sigmas: Vec<f64>,
    init_noise_sigma: f64,
    prediction: Prediction,
    derivatives: Vec<Tensor<4>>,
}

const ORDER: usize = 4;

impl Lms {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let spacing = config.spacing(Spacing::Linspace)?;
        let (timesteps, sigmas) = sigma_schedule(config, steps, spacing)?;
        Ok(Self { init_noise_sigma: sigma_init_noise(spacing, &sigmas), timesteps, sigmas, prediction: config.prediction()?, derivatives: Vec::new() })
    }

    /// ∫ from σ_i to σ_{i+1} of the Lagrange polynomial for past point `current` among `order`.
    fn coefficient(&self, order: usize, i: usize, current: usize) -> f64 {
        let basis = |tau: f64| {
            (0..order)
                .filter(|&k| k != current)
                .map(|k| (tau - self.sigmas[i - k]) / (self.sigmas[i - current] - self.sigmas[i - k]))
                .product::<f64>()
        };
        // 4-point Gauss–Legendre is exact for the degree ≤ 3 polynomials here.
        const NODES: [(f64, f64); 4] = [
            (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
            (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
            (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
            (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
        ];
        let (a, b) = (self.sigmas[i], self.sigmas[i + 1]);
        let (half, mid) = ((b - a) / 2.0, (a + b) / 2.0);
        NODES.iter().map(|(x, w)| w * basis(mid + half * x)).sum::<f64>() * half
    }
}

impl Scheduler for Lms {
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
        self.derivatives.push((sample.clone() - x0.clone()) / sigma);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        let order = (i + 1).min(ORDER);
        let mut prev = sample;
        for (current, derivative) in self.derivatives.iter().rev().enumerate().take(order) {
            prev = prev + derivative.clone() * self.coefficient(order, i, current);
        }
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        original + noise * self.sigmas[i]
    }
}
