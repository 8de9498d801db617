//! PNDM in its PLMS form (diffusers' PNDMScheduler with skip_prk_steps, SD 1.5's default): a
//! linear multistep over past noise predictions. The second timestep repeats the first: diffusers
//! takes a half-way Heun-like step there.

use burn::prelude::*;

use super::{Prediction, Scheduler, SchedulerConfig, Spacing, StepOutput, arange_down, ddpm_add_noise, linspace, round_half_even, x0_and_eps};
use crate::error::{Error, Result};

pub struct Pndm {
    alphas_cumprod: Vec<f32>,
    final_alpha: f64,
    timesteps: Vec<f64>,
    step_ratio: i64,
    prediction: Prediction,
    /// Past noise predictions (at most 4).
    ets: Vec<Tensor<4>>,
    /// The sample at the first step, reused by the repeated second step.
    first_sample: Option<Tensor<4>>,
    /// Steps taken (img2img starts part-way, and the multistep logic counts its own steps).
    counter: usize,
}

impl Pndm {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let train = config.num_train_timesteps;
        let base: Vec<f64> = match config.spacing(Spacing::Leading)? {
            Spacing::Linspace => linspace(0.0, (train - 1) as f64, steps).into_iter().map(round_half_even).collect(),
            Spacing::Leading => (0..steps).map(|i| (i * (train / steps) + config.steps_offset) as f64).collect(),
            Spacing::Trailing => arange_down(train as f64, train as f64 / steps as f64).into_iter().rev().map(|t| round_half_even(t) - 1.0).collect(),
        };
        if steps == 0 {
            return Err(Error::InvalidRequest("PNDM needs at least 1 step".into()));
        }
        // ascending [t0 .. t_{n-2}, t_{n-2}, t_{n-1}] (one step: just [t0]), then reversed
        let mut ts: Vec<f64> = base[..steps - 1].to_vec();
        if steps >= 2 {
            ts.push(base[steps - 2]);
        }
        ts.push(base[steps - 1]);
        ts.reverse();
        let alphas_cumprod = config.alphas_cumprod()?;
        Ok(Self {
            final_alpha: if config.set_alpha_to_one { 1.0 } else { alphas_cumprod[0] as f64 },
            alphas_cumprod,
            timesteps: ts,
            step_ratio: (train / steps) as i64,
            prediction: config.prediction()?,
            ets: Vec::new(),
            first_sample: None,
            counter: 0,
        })
    }

    fn alpha(&self, t: i64) -> f64 {
        if t >= 0 { self.alphas_cumprod[t as usize] as f64 } else { self.final_alpha }
    }
}

impl Scheduler for Pndm {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, _noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let mut t = self.timesteps[i] as i64;
        let mut prev_t = t - self.step_ratio;
        let mut sample = sample;
        let counter = self.counter;
        self.counter += 1;
        if counter != 1 {
            if self.ets.len() == 4 {
                self.ets.remove(0);
            }
            self.ets.push(model_output.clone());
        } else {
            prev_t = t;
            t += self.step_ratio;
        }
        let n = self.ets.len();
        let e = &self.ets;
        let eps = if n == 1 && counter == 0 {
            self.first_sample = Some(sample.clone());
            model_output
        } else if n == 1 && counter == 1 {
            sample = self.first_sample.take().expect("first sample");
            (model_output + e[0].clone()) / 2.0
        } else if n == 2 {
            (e[1].clone() * 3.0 - e[0].clone()) / 2.0
        } else if n == 3 {
            (e[2].clone() * 23.0 - e[1].clone() * 16.0 + e[0].clone() * 5.0) / 12.0
        } else {
            (e[3].clone() * 55.0 - e[2].clone() * 59.0 + e[1].clone() * 37.0 - e[0].clone() * 9.0) / 24.0
        };
        let (a, a_prev) = (self.alpha(t), self.alpha(prev_t));
        let (x0, eps) = match self.prediction {
            Prediction::Epsilon => x0_and_eps(Prediction::Epsilon, eps, sample.clone(), a),
            // The multistep combination is of v predictions; diffusers converts it to ε.
            other => x0_and_eps(other, eps, sample.clone(), a),
        };
        let (b, b_prev) = (1.0 - a, 1.0 - a_prev);
        let denom = a * b_prev.sqrt() + (a * b * a_prev).sqrt();
        let prev = sample * (a_prev / a).sqrt() - eps * ((a_prev - a) / denom);
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }

    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4> {
        ddpm_add_noise(original, noise, self.alpha(self.timesteps[i] as i64))
    }
}
