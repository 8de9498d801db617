//! The settings a model is meant to run with: its own sampler and the steps, guidance and size
//! that suit it. Decided here, once, for the CLI (flags left out) and the page (its
//! "model default"), from the model's configs and what its manifest says.

use serde::{Deserialize, Serialize};

use crate::model::config::{UNetConfig, VaeConfig};
use crate::pipeline::generate::Field;
use crate::scheduler::{SchedulerConfig, SchedulerKind};

/// What a manifest may say about its model, over what the configs imply: SD-Turbo's configs do
/// not say that it wants one step without guidance (`websd convert --suggest-steps 1
/// --suggest-guidance 0` writes it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f64>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.steps.is_none() && self.guidance_scale.is_none()
    }

    /// Refuses values no generation could use (outside the [`Field`] ranges a request takes).
    pub fn check(&self) -> Result<(), String> {
        if let Some(steps) = self.steps.filter(|&s| !Field::STEPS.holds(s as f64)) {
            return Err(format!("suggested steps {steps}: must be {}", Field::STEPS.range()));
        }
        if let Some(g) = self.guidance_scale.filter(|&g| !Field::GUIDANCE.holds(g)) {
            return Err(format!("suggested guidance {g}: must be {}", Field::GUIDANCE.range()));
        }
        Ok(())
    }
}

/// The settings suggested for one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggested {
    /// The sampler its scheduler_config.json names (serialized by name: `euler`, …).
    #[serde(serialize_with = "kind_name")]
    pub scheduler: SchedulerKind,
    pub steps: usize,
    pub guidance_scale: f64,
    pub width: usize,
    pub height: usize,
}

fn kind_name<S: serde::Serializer>(kind: &SchedulerKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(kind.name())
}

impl Suggested {
    pub fn infer(unet: &UNetConfig, vae: &VaeConfig, scheduler_config: &SchedulerConfig, hints: &Hints) -> Self {
        let scheduler = scheduler_config.class_name.as_deref().and_then(|c| SchedulerKind::from_class(c, scheduler_config.use_karras_sigmas)).unwrap_or(SchedulerKind::Euler);
        // As diffusers: the UNet's sample_size (latent pixels) times the VAE's downscale.
        let vae_scale = 1usize << vae.block_out_channels.len().saturating_sub(1);
        let side = unet.other.get("sample_size").and_then(serde_json::Value::as_u64).map(|s| s as usize * vae_scale).unwrap_or(512);
        let (steps, guidance_scale) = match scheduler {
            // LatentConsistencyModelPipeline's defaults: 4 steps, guidance 8.5 embedded in the UNet.
            // An LCM without that embedding (an LCM-LoRA merge) wants no CFG at all.
            SchedulerKind::Lcm if unet.time_cond_proj_dim.is_some() => (4, 8.5),
            SchedulerKind::Lcm => (4, 1.0),
            // diffusers' StableDiffusionPipeline defaults to 50 steps; 20 with the model's own
            // sampler is what the community settled on and what websd has always used.
            _ => (Field::STEPS.default as usize, Field::GUIDANCE.default),
        };
        // A side the form cannot hold (a tiny test model's 32 px) is brought into range.
        let side = Field::WIDTH.clamp(side as f64) as usize;
        Self { scheduler, steps: hints.steps.unwrap_or(steps), guidance_scale: hints.guidance_scale.unwrap_or(guidance_scale), width: side, height: side }
    }

    /// The suggestion for a converted model, from its manifest alone: what the page shows (and
    /// fills in) before the model is loaded, and what loading it uses.
    pub fn for_manifest(manifest: &crate::weights::Manifest) -> crate::Result<Self> {
        let configs = crate::pipeline::Configs::from_manifest(manifest)?;
        Ok(Self::infer(&configs.unet, &configs.vae, &SchedulerConfig::from_json(&manifest.scheduler.to_string())?, &manifest.suggested))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduler(class: &str) -> SchedulerConfig {
        SchedulerConfig::from_json(&format!(r#"{{"_class_name": "{class}"}}"#)).unwrap()
    }

    #[test]
    fn suggests_from_the_configs_as_diffusers_would() {
        let vae = VaeConfig::sd();
        // SD 1.5 (sample_size 64) with its PNDM config; SD 2.1 (96) at 768².
        let sd15 = Suggested::infer(&UNetConfig::sd15(), &vae, &scheduler("PNDMScheduler"), &Hints::default());
        assert_eq!(sd15, Suggested { scheduler: SchedulerKind::Pndm, steps: 20, guidance_scale: 7.5, width: 512, height: 512 });
        let sd21 = Suggested::infer(&UNetConfig::sd21(), &vae, &scheduler("EulerDiscreteScheduler"), &Hints::default());
        assert_eq!((sd21.scheduler, sd21.width, sd21.height), (SchedulerKind::Euler, 768, 768));

        // LCM: 4 steps; guidance 8.5 embedded in an LCM-distilled UNet, none (1.0) otherwise.
        let mut lcm_unet = UNetConfig::sd15();
        lcm_unet.time_cond_proj_dim = Some(256);
        let lcm = Suggested::infer(&lcm_unet, &vae, &scheduler("LCMScheduler"), &Hints::default());
        assert_eq!((lcm.scheduler, lcm.steps, lcm.guidance_scale), (SchedulerKind::Lcm, 4, 8.5));
        let lcm_lora = Suggested::infer(&UNetConfig::sd15(), &vae, &scheduler("LCMScheduler"), &Hints::default());
        assert_eq!((lcm_lora.steps, lcm_lora.guidance_scale), (4, 1.0));

        // What the manifest says wins (SD-Turbo: 1 step, no guidance).
        let turbo = Hints { steps: Some(1), guidance_scale: Some(0.0) };
        let t = Suggested::infer(&UNetConfig::sd21(), &vae, &scheduler("EulerDiscreteScheduler"), &turbo);
        assert_eq!((t.steps, t.guidance_scale), (1, 0.0));
    }

    #[test]
    fn refuses_hints_no_generation_could_use() {
        assert!(Hints { steps: Some(1), guidance_scale: Some(0.0) }.check().is_ok());
        assert!(Hints { steps: Some(0), guidance_scale: None }.check().unwrap_err().contains("steps 0"));
        assert!(Hints { steps: None, guidance_scale: Some(f64::NAN) }.check().unwrap_err().contains("guidance"));
        assert!(Hints { steps: None, guidance_scale: Some(-1.0) }.check().is_err());
    }
}
