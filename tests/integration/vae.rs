//! AutoencoderKL against diffusers' encode/decode on the fixture.

use burn::prelude::*;
use websd::model::vae::AutoencoderKL;

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
