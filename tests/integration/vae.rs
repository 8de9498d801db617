//! AutoencoderKL against diffusers' encode/decode on the fixture.

use burn::prelude::*;
use websd::model::config::VaeConfig;
use websd::model::vae::AutoencoderKL;
use websd::weights::{RandomSource, SafetensorsSource, TensorSource, WeightLoader};

use crate::common::{assert_close, fixtures, parity, wgpu_device};

fn check_vae(device: &Device, tag: &str) {
    let device = device.clone();
    let vae = AutoencoderKL::from_dir(fixtures().join("sd1/vae"), &device).expect("load vae");
    let reference = parity("sd1/vae");
    assert!((vae.scaling_factor - 0.18215).abs() < 1e-9, "scaling_factor read from config");
    for case in 0..2 {
        let image = reference.tensor::<4>(&format!("case{case}.image"), &device).unwrap();
        let (mean, logvar) = vae.encode(image);
        assert_close(&format!("{tag} vae case{case} mean"), mean, &reference, &format!("case{case}.mean"), 1e-4);
        assert_close(&format!("{tag} vae case{case} logvar"), logvar, &reference, &format!("case{case}.logvar"), 1e-4);
        let latents = reference.tensor::<4>(&format!("case{case}.latents"), &device).unwrap();
        assert_close(&format!("{tag} vae case{case} decoded"), vae.decode(latents), &reference, &format!("case{case}.decoded"), 1e-4);
    }
}

#[test]
fn vae_matches_diffusers() {
    check_vae(&Device::flex(), "flex");
}

#[test]
fn wgpu_vae_matches_diffusers() {
    check_vae(&wgpu_device(), "wgpu");
}

/// Older diffusers VAEs name the mid-block attention `query`/`key`/`value`/`proj_attn`; diffusers
/// renames them on load and so do we.
#[test]
fn vae_loads_deprecated_attention_names() {
    struct OldNames(SafetensorsSource);
    fn current(name: &str) -> String {
        let old = ["query", "key", "value", "proj_attn"];
        let new = ["to_q", "to_k", "to_v", "to_out.0"];
        old.iter().zip(new).fold(name.to_string(), |n, (o, c)| n.replace(&format!("attentions.0.{o}."), &format!("attentions.0.{c}.")))
    }
    fn deprecated(name: &str) -> String {
        let new = ["to_q", "to_k", "to_v", "to_out.0"];
        let old = ["query", "key", "value", "proj_attn"];
        new.iter().zip(old).fold(name.to_string(), |n, (c, o)| n.replace(&format!("attentions.0.{c}."), &format!("attentions.0.{o}.")))
    }
    impl TensorSource for OldNames {
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            if deprecated(name) != name { None } else { self.0.shape(&current(name)) }
        }
        fn names(&self) -> Vec<String> {
            self.0.names().iter().map(|n| deprecated(n)).collect()
        }
        fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> websd::Result<Tensor<1>> {
            self.0.load(&current(name), shape, device)
        }
    }
    let device = Device::flex();
    let dir = fixtures().join("sd1/vae");
    let config = VaeConfig::from_json(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let mut source = OldNames(SafetensorsSource::from_dir(&dir).unwrap());
    assert!(source.names().contains(&"decoder.mid_block.attentions.0.proj_attn.weight".to_string()));
    let vae = AutoencoderKL::load(&config, &mut WeightLoader::new(&mut source, &device)).expect("load with old names");
    let reference = parity("sd1/vae");
    let latents = reference.tensor::<4>("case0.latents", &device).unwrap();
    assert_close("flex vae (deprecated names) case0 decoded", vae.decode(latents), &reference, "case0.decoded", 1e-4);
}

/// The real SD VAE configuration builds and runs (random weights, an 8×8 latent).
#[test]
fn sd_full_size_vae_runs() {
    let device = Device::flex();
    let mut source = RandomSource::new();
    let vae = AutoencoderKL::load(&VaeConfig::sd(), &mut WeightLoader::new(&mut source, &device)).unwrap();
    assert_eq!(source.parameter_count(), 83_653_863, "SD AutoencoderKL parameter count");
    let latents = Tensor::<4>::random([1, 4, 8, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let image = vae.decode(latents);
    assert_eq!(image.dims(), [1, 3, 64, 64]);
    let (mean, logvar) = vae.encode(image.clamp(-1.0, 1.0));
    assert_eq!(mean.dims(), [1, 4, 8, 8]);
    assert_eq!(logvar.dims(), [1, 4, 8, 8]);
    assert!(crate::common::values(mean).iter().all(|v| v.is_finite()));
}

/// Tiled decoding against diffusers' `tiled_decode` (8-latent tiles, overlap factor 0.25).
#[test]
fn vae_tiled_decode_matches_diffusers() {
    let device = Device::flex();
    let vae = AutoencoderKL::from_dir(fixtures().join("sd1/vae"), &device).expect("load vae");
    let reference = parity("vae_tiling");
    for case in 0..2 {
        let latents = reference.tensor::<4>(&format!("case{case}.latents"), &device).unwrap();
        let tiled = vae.decode_tiled(latents.clone(), 8, 2);
        assert_close(&format!("vae tiled case{case}"), tiled.clone(), &reference, &format!("case{case}.decoded"), 1e-4);
        // Tiling changes the result, so the comparison above did exercise the blending.
        let whole = crate::common::values(vae.decode(latents));
        let diff = crate::common::rel_err(&crate::common::values(tiled), &whole);
        assert!(diff > 1e-4, "case{case}: tiled equals whole ({diff:.1e})");
    }
}

/// A budget the whole decode fits in decodes whole (bit-identical); a small one tiles.
#[test]
fn vae_decode_within_budget() {
    let device = Device::flex();
    let vae = AutoencoderKL::from_dir(fixtures().join("sd1/vae"), &device).expect("load vae");
    let latents = parity("vae_tiling").tensor::<4>("case0.latents", &device).unwrap();
    let whole = crate::common::values(vae.decode(latents.clone()));
    assert_eq!(crate::common::values(vae.decode_within(latents.clone(), u64::MAX)), whole);
    let need = vae.decode_activation_bytes(16, 16);
    assert_eq!(crate::common::values(vae.decode_within(latents.clone(), need)), whole);
    // A quarter of the need: tiles of at most 8 latents.
    let small = vae.decode_within(latents.clone(), need / 4);
    assert_eq!(small.dims(), [1, 3, 128, 128]);
    assert_eq!(crate::common::values(small), crate::common::values(vae.decode_tiled(latents, 8, 2)));
}
