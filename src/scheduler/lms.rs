//! LMS (diffusers' LMSDiscreteScheduler): linear multistep over up to 4 past derivatives, with
//! coefficients from integrating the Lagrange basis polynomials (exact Gauss–Legendre quadrature;
//! diffusers uses scipy's quad on the same polynomials).

use burn::prelude::*;

use super::StepOutput;
use super::sigma::{SigmaSchedule, SigmaStep};
use crate::error::Result;

/// The derivatives of the last steps (at most 4).
#[derive(Default)]
pub struct Lms {
    derivatives: Vec<Tensor<4>>,
}

const ORDER: usize = 4;

/// ∫ from σ_i to σ_{i+1} of the Lagrange polynomial for past point `current` among `order`.
fn coefficient(sigmas: &[f64], order: usize, i: usize, current: usize) -> f64 {
    let basis = |tau: f64| (0..order).filter(|&k| k != current).map(|k| (tau - sigmas[i - k]) / (sigmas[i - current] - sigmas[i - k])).product::<f64>();
    // 4-point Gauss–Legendre is exact for the degree ≤ 3 polynomials here.
    const NODES: [(f64, f64); 4] = [
        (-0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
        (-0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.339_981_043_584_856_3, 0.652_145_154_862_546_1),
        (0.861_136_311_594_052_6, 0.347_854_845_137_453_9),
    ];
    let (a, b) = (sigmas[i], sigmas[i + 1]);
    let (half, mid) = ((b - a) / 2.0, (a + b) / 2.0);
    NODES.iter().map(|(x, w)| w * basis(mid + half * x)).sum::<f64>() * half
}

impl SigmaStep for Lms {
    fn step(&mut self, s: &SigmaSchedule, model_output: Tensor<4>, i: usize, sample: Tensor<4>, _noise: Option<Tensor<4>>) -> Result<StepOutput> {
        let x0 = s.x0(model_output, sample.clone(), i);
        self.derivatives.push((sample.clone() - x0.clone()) / s.sigmas[i]);
        if self.derivatives.len() > ORDER {
            self.derivatives.remove(0);
        }
        let order = (i + 1).min(ORDER);
        let mut prev = sample;
        for (current, derivative) in self.derivatives.iter().rev().enumerate().take(order) {
            prev = prev + derivative.clone() * coefficient(&s.sigmas, order, i, current);
        }
        Ok(StepOutput { prev_sample: prev, denoised: x0 })
    }
}
