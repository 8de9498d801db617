//! Euler (diffusers' EulerDiscreteScheduler; also SD-Turbo's one-step sampler, trailing spacing).

use burn::prelude::*;

use super::StepOutput;
use super::sigma::{SigmaSchedule, SigmaStep};
use crate::error::Result;

pub struct Euler;

impl SigmaStep for Euler {
    fn step(&mut self, s: &SigmaSchedule, model_output: Tensor<4>, i: usize, sample: Tensor<4>, _noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let sigma = s.sigmas[i];
        let x0 = s.x0(model_output, sample.clone(), i);
        let derivative = (sample.clone() - x0.clone()) / sigma;
        let prev = sample + derivative * (s.sigmas[i + 1] - sigma);
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }
}
