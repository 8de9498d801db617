//! Euler ancestral (diffusers' EulerAncestralDiscreteScheduler): an Euler step to σ_down, then
//! fresh noise of size σ_up.

use burn::prelude::*;

use super::sigma::{SigmaSchedule, SigmaStep};
use super::{StepOutput, missing_noise};
use crate::error::Result;

pub struct EulerAncestral;

impl SigmaStep for EulerAncestral {
    const NEEDS_NOISE: bool = true;

    fn step(&mut self, s: &SigmaSchedule, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let (from, to) = (s.sigmas[i], s.sigmas[i + 1]);
        let x0 = s.x0(model_output, sample.clone(), i);
        let up = (to * to * (from * from - to * to) / (from * from)).sqrt();
        let down = (to * to - up * up).sqrt();
        let derivative = (sample.clone() - x0.clone()) / from;
        let noise = noise.ok_or_else(|| missing_noise("Euler ancestral"))?;
        let prev = sample + derivative * (down - from) + noise * up;
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }
}
