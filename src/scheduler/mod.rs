//! Samplers, with diffusers' names and semantics, configured by a model's scheduler_config.json.
//!
//! Scalars (timesteps, sigmas, coefficients) are computed on the CPU as diffusers does
//! (alphas_cumprod in f32 like torch, sigma schedules in f64 like numpy); the latents stay on the
//! device and each step is a few tensor operations on them.

pub mod ddim;
pub mod dpm_solver;
pub mod euler;
pub mod euler_ancestral;
pub mod lcm;
pub mod lms;
pub mod pndm;
pub mod sigma;

use burn::prelude::*;
use serde::Deserialize;

use crate::error::{Error, Result};

/// diffusers' scheduler_config.json (the keys SD pipelines use).
#[derive(Debug, Clone, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_schedule")]
    pub beta_schedule: String,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    /// Absent in SD 1.5's config: each sampler then uses its own diffusers default.
    #[serde(default)]
    pub timestep_spacing: Option<String>,
    #[serde(default)]
    pub set_alpha_to_one: bool,
    /// DDIM and LCM clamp their x0 prediction to ±clip_sample_range (diffusers; the other
    /// samplers ignore the key, as diffusers' do).
    #[serde(default)]
    pub clip_sample: bool,
    #[serde(default = "one")]
    pub clip_sample_range: f64,
    /// Dynamic thresholding (DDIM, LCM): not implemented, refused by the samplers that would use it.
    #[serde(default)]
    pub thresholding: bool,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    /// LCM: the distillation schedule's length and the boundary-condition scaling.
    #[serde(default = "default_original_steps")]
    pub original_inference_steps: usize,
    #[serde(default = "default_timestep_scaling")]
    pub timestep_scaling: f64,
    #[serde(default)]
    pub rescale_betas_zero_snr: bool,
    #[serde(rename = "_class_name", default)]
    pub class_name: Option<String>,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.00085
}
fn default_beta_end() -> f64 {
    0.012
}
fn default_schedule() -> String {
    "scaled_linear".into()
}
fn default_prediction() -> String {
    "epsilon".into()
}
fn one() -> f64 {
    1.0
}
fn default_original_steps() -> usize {
    50
}
fn default_timestep_scaling() -> f64 {
    10.0
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prediction {
    Epsilon,
    VPrediction,
    Sample,
}

impl SchedulerConfig {
    pub fn from_json(text: &str) -> Result<Self> {
        let c: Self = crate::config_json::parse(text, "scheduler_config.json", &[])?;
        c.prediction()?;
        if c.rescale_betas_zero_snr {
            return Err(Error::UnsupportedConfig("rescale_betas_zero_snr is not supported".into()));
        }
        Ok(c)
    }

    pub fn prediction(&self) -> Result<Prediction> {
        match self.prediction_type.as_str() {
            "epsilon" => Ok(Prediction::Epsilon),
            "v_prediction" => Ok(Prediction::VPrediction),
            "sample" => Ok(Prediction::Sample),
            other => Err(Error::UnsupportedConfig(format!("prediction_type `{other}`"))),
        }
    }

    /// `timestep_spacing`, or the sampler's own default when the config has none.
    pub fn spacing(&self, default: Spacing) -> Result<Spacing> {
        match self.timestep_spacing.as_deref() {
            None => Ok(default),
            Some("leading") => Ok(Spacing::Leading),
            Some("linspace") => Ok(Spacing::Linspace),
            Some("trailing") => Ok(Spacing::Trailing),
            Some(other) => Err(Error::UnsupportedConfig(format!("timestep_spacing `{other}`"))),
        }
    }

    /// ᾱ_t for t in 0..num_train_timesteps, in f32 as torch computes it.
    pub fn alphas_cumprod(&self) -> Result<Vec<f32>> {
        let n = self.num_train_timesteps;
        let betas: Vec<f32> = match self.beta_schedule.as_str() {
            "linear" => linspace(self.beta_start, self.beta_end, n).into_iter().map(|b| b as f32).collect(),
            "scaled_linear" => linspace(self.beta_start.sqrt(), self.beta_end.sqrt(), n)
                .into_iter()
                .map(|b| {
                    let b = b as f32;
                    b * b
                })
                .collect(),
            "squaredcos_cap_v2" => {
                let f = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
                (0..n).map(|i| (1.0 - f((i + 1) as f64 / n as f64) / f(i as f64 / n as f64)).min(0.999) as f32).collect()
            }
            other => return Err(Error::UnsupportedConfig(format!("beta_schedule `{other}`"))),
        };
        let mut product = 1f32;
        Ok(betas
            .iter()
            .map(|b| {
                product *= 1.0 - b;
                product
            })
            .collect())
    }
}

/// How inference timesteps are spread over the training range (diffusers' `timestep_spacing`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spacing {
    Leading,
    Linspace,
    Trailing,
}

/// numpy's linspace (endpoint included), in f64.
pub fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![start];
    }
    let step = (end - start) / (n - 1) as f64;
    (0..n).map(|i| if i == n - 1 { end } else { start + step * i as f64 }).collect()
}

/// Descending inference timesteps as the discrete samplers (DDIM, Euler, LMS) lay them out.
pub fn spaced_timesteps(spacing: Spacing, n: usize, config: &SchedulerConfig) -> Vec<f64> {
    let train = config.num_train_timesteps;
    match spacing {
        Spacing::Linspace => linspace(0.0, (train - 1) as f64, n).into_iter().rev().collect(),
        Spacing::Leading => {
            let ratio = train / n;
            (0..n).rev().map(|i| (i * ratio + config.steps_offset) as f64).collect()
        }
        Spacing::Trailing => arange_down(train as f64, train as f64 / n as f64).into_iter().map(|t| round_half_even(t) - 1.0).collect(),
    }
}

/// numpy's `arange(start, 0, -step)` exactly: its length is ceil(start / step) and its values are
/// start + i·delta with delta = (start − step) − start, which is not always −step. (Repeated
/// subtraction drifts: SD 2's trailing DDIM at 3 steps once got a 4th timestep, −1.)
pub fn arange_down(start: f64, step: f64) -> Vec<f64> {
    let len = (start / step).ceil() as usize;
    let delta = (start - step) - start;
    (0..len).map(|i| start + i as f64 * delta).collect()
}

/// numpy's round (half to even).
pub fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 { r - x.signum() } else { r }
}

/// σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) in f32, as torch computes it from the f32 ᾱ.
pub fn train_sigmas(alphas_cumprod: &[f32]) -> Vec<f64> {
    alphas_cumprod.iter().map(|&a| (((1.0 - a) / a).sqrt()) as f64).collect()
}

/// numpy's interp of `values` (given at 0, 1, 2, …) at `x`.
pub fn interp(x: f64, values: &[f64]) -> f64 {
    if x <= 0.0 {
        return values[0];
    }
    let last = values.len() - 1;
    if x >= last as f64 {
        return values[last];
    }
    let i = x.floor() as usize;
    let w = x - i as f64;
    values[i] + (values[i + 1] - values[i]) * w
}

/// Karras et al.'s sigma schedule (rho 7) between the schedule's extremes.
pub fn karras_sigmas(sigma_min: f64, sigma_max: f64, n: usize) -> Vec<f64> {
    let rho = 7.0;
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    linspace(0.0, 1.0, n).into_iter().map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho)).collect()
}

/// The (fractional) training timestep of `sigma`, interpolating in log-sigma as diffusers does.
pub fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let n = log_sigmas.len();
    let low = log_sigmas.iter().filter(|&&l| log_sigma - l >= 0.0).count().saturating_sub(1).min(n - 2);
    let (lo, hi) = (log_sigmas[low], log_sigmas[low + 1]);
    let w = ((lo - log_sigma) / (lo - hi)).clamp(0.0, 1.0);
    (1.0 - w) * low as f64 + w * (low + 1) as f64
}

/// One sampler step's results.
pub struct StepOutput {
    pub prev_sample: Tensor<4>,
    /// The predicted clean latents (what previews show; LCM's output).
    pub denoised: Tensor<4>,
}

/// A sampler: a small state machine over the inference timesteps.
pub trait Scheduler {
    /// The model timestep for each step.
    fn timesteps(&self) -> &[f64];
    /// Sigmas, for the samplers that have them (one more than timesteps).
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }
    /// The scale of the initial noise.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// The UNet input for step `i` (Euler/LMS divide by sqrt(σ²+1)).
    fn scale_model_input(&self, sample: Tensor<4>, _i: usize) -> Tensor<4> {
        sample
    }
    /// Whether step `i` consumes fresh noise (ancestral samplers, DDIM with eta > 0, LCM).
    fn needs_noise(&self, _i: usize) -> bool {
        false
    }
    /// Advances from step `i`; `noise` must be given when `needs_noise(i)`.
    fn step(&mut self, model_output: Tensor<4>, i: usize, sample: Tensor<4>, noise: Option<Tensor<4>>) -> Result<StepOutput>;
    /// img2img: `original` noised to the level of step `i`.
    fn add_noise(&self, original: Tensor<4>, noise: Tensor<4>, i: usize) -> Tensor<4>;
}

/// The samplers users pick by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Ddim,
    Euler,
    EulerAncestral,
    DpmPP2M,
    DpmPP2MKarras,
    Lms,
    Lcm,
    Pndm,
}

impl SchedulerKind {
    pub const ALL: [SchedulerKind; 8] = [Self::Ddim, Self::Euler, Self::EulerAncestral, Self::DpmPP2M, Self::DpmPP2MKarras, Self::Lms, Self::Lcm, Self::Pndm];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ddim => "ddim",
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_a",
            Self::DpmPP2M => "dpmpp_2m",
            Self::DpmPP2MKarras => "dpmpp_2m_karras",
            Self::Lms => "lms",
            Self::Lcm => "lcm",
            Self::Pndm => "pndm",
        }
    }

    /// The name people know it by (A1111's), as the page's list shows it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ddim => "DDIM",
            Self::Euler => "Euler",
            Self::EulerAncestral => "Euler a",
            Self::DpmPP2M => "DPM++ 2M",
            Self::DpmPP2MKarras => "DPM++ 2M Karras",
            Self::Lms => "LMS",
            Self::Lcm => "LCM",
            Self::Pndm => "PNDM",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| Error::InvalidRequest(format!("unknown scheduler `{name}`: use one of {}", Self::ALL.map(|k| k.name()).join(", "))))
    }

    /// The sampler a model's scheduler_config.json names (`_class_name`), if we have it.
    pub fn from_class(class: &str, karras: bool) -> Option<Self> {
        Some(match class {
            "DDIMScheduler" => Self::Ddim,
            "EulerDiscreteScheduler" => Self::Euler,
            "EulerAncestralDiscreteScheduler" => Self::EulerAncestral,
            "DPMSolverMultistepScheduler" if karras => Self::DpmPP2MKarras,
            "DPMSolverMultistepScheduler" => Self::DpmPP2M,
            "LMSDiscreteScheduler" => Self::Lms,
            "LCMScheduler" => Self::Lcm,
            "PNDMScheduler" => Self::Pndm,
            _ => return None,
        })
    }

    /// A sampler of this kind with `steps` inference steps.
    pub fn build(self, config: &SchedulerConfig, steps: usize) -> Result<Box<dyn Scheduler>> {
        if steps == 0 || steps > config.num_train_timesteps {
            return Err(Error::InvalidRequest(format!("steps must be 1..={}", config.num_train_timesteps)));
        }
        Ok(match self {
            Self::Ddim => Box::new(ddim::Ddim::new(config, steps, 0.0)?),
            Self::Euler => Box::new(sigma::SigmaSampler::new(config, steps, euler::Euler)?),
            Self::EulerAncestral => Box::new(sigma::SigmaSampler::new(config, steps, euler_ancestral::EulerAncestral)?),
            Self::DpmPP2M => Box::new(dpm_solver::DpmSolver::new(config, steps, false)?),
            Self::DpmPP2MKarras => Box::new(dpm_solver::DpmSolver::new(config, steps, true)?),
            Self::Lms => Box::new(sigma::SigmaSampler::new(config, steps, lms::Lms::default())?),
            Self::Lcm => Box::new(lcm::Lcm::new(config, steps)?),
            Self::Pndm => Box::new(pndm::Pndm::new(config, steps)?),
        })
    }
}

/// Splits a model output into (predicted x0, predicted ε) for DDPM-style samplers at ᾱ_t.
pub fn x0_and_eps(prediction: Prediction, model_output: Tensor<4>, sample: Tensor<4>, alpha_prod: f64) -> (Tensor<4>, Tensor<4>) {
    let (a, b) = (alpha_prod.sqrt(), (1.0 - alpha_prod).sqrt());
    match prediction {
        Prediction::Epsilon => ((sample - model_output.clone() * b) / a, model_output),
        Prediction::VPrediction => (sample.clone() * a - model_output.clone() * b, model_output * a + sample * b),
        Prediction::Sample => (model_output.clone(), (sample - model_output * a) / b),
    }
}

/// DDIM's and LCM's "clip predicted x_0": the range to clamp x0 to, if `clip_sample` is set.
/// `thresholding` (dynamic thresholding, for pixel-space models) is refused.
pub fn x0_clip_range(config: &SchedulerConfig, sampler: &str) -> Result<Option<f64>> {
    if config.thresholding {
        return Err(Error::UnsupportedConfig(format!("{sampler}: thresholding is not supported")));
    }
    Ok(config.clip_sample.then_some(config.clip_sample_range))
}

pub fn clip_x0(x0: Tensor<4>, range: Option<f64>) -> Tensor<4> {
    match range {
        Some(r) => x0.clamp(-r, r),
        None => x0,
    }
}

/// The x0 prediction of the sigma-parameterised samplers (Euler, LMS, Euler ancestral).
pub fn sigma_x0(prediction: Prediction, model_output: Tensor<4>, sample: Tensor<4>, sigma: f64) -> Tensor<4> {
    match prediction {
        Prediction::Epsilon => sample - model_output * sigma,
        Prediction::VPrediction => model_output * (-sigma / (sigma * sigma + 1.0).sqrt()) + sample / (sigma * sigma + 1.0),
        Prediction::Sample => model_output,
    }
}

/// The initial noise scale of the sigma samplers: σ_max for linspace/trailing spacing, else
/// sqrt(σ_max² + 1).
pub fn sigma_init_noise(spacing: Spacing, sigmas: &[f64]) -> f64 {
    let max = sigmas.iter().cloned().fold(0.0, f64::max);
    if matches!(spacing, Spacing::Linspace | Spacing::Trailing) { max } else { (max * max + 1.0).sqrt() }
}

/// DDPM-style forward noising: sqrt(ᾱ)·x + sqrt(1 − ᾱ)·ε.
pub fn ddpm_add_noise(original: Tensor<4>, noise: Tensor<4>, alpha_prod: f64) -> Tensor<4> {
    original * alpha_prod.sqrt() + noise * (1.0 - alpha_prod).sqrt()
}

fn missing_noise(name: &str) -> Error {
    Error::Other(format!("the {name} sampler needs noise for this step"))
}
