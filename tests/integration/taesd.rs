//! TAESD (AutoencoderTiny) against diffusers on the fixture.

use burn::prelude::*;
use websd::model::taesd::Taesd;

use crate::common::{assert_close, fixtures, parity};

#[test]
fn taesd_matches_diffusers() {
    let device = Device::flex();
    let taesd = Taesd::from_dir(fixtures().join("taesd"), &device).expect("load taesd");
    let reference = parity("taesd");
    for case in 0..2 {
        let image = reference.tensor::<4>(&format!("case{case}.image"), &device).unwrap();
        assert_close(&format!("taesd case{case} encode"), taesd.encode(image), &reference, &format!("case{case}.encoded"), 1e-4);
        let latents = reference.tensor::<4>(&format!("case{case}.latents"), &device).unwrap();
        assert_close(&format!("taesd case{case} decode"), taesd.decode(latents), &reference, &format!("case{case}.decoded"), 1e-4);
    }
}

/// madebyollin/taesd's full configuration builds and runs (random weights): 8× down and up.
#[test]
fn full_size_taesd_runs() {
    use websd::model::taesd::TaesdConfig;
    use websd::weights::{RandomSource, WeightLoader};
    let device = Device::flex();
    let mut source = RandomSource::new();
    let taesd = Taesd::load(&TaesdConfig::sd(), &mut WeightLoader::new(&mut source, &device)).unwrap();
    assert_eq!(source.parameter_count(), 1_222_532 + 1_222_531, "AutoencoderTiny() parameter count");
    let latents = Tensor::<4>::random([1, 4, 8, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    let image = taesd.decode(latents);
    assert_eq!(image.dims(), [1, 3, 64, 64]);
    let latents = taesd.encode(image);
    assert_eq!(latents.dims(), [1, 4, 8, 8]);
    assert!(crate::common::values(latents).iter().all(|v| v.is_finite()));
}

/// Real weights: TAEF2 (32 latent channels, pool branches) round-trips a real photo at 256² to
/// ≥ 29 dB PSNR, while random latents of the same statistics stay far below (README in the fixture).
fn taef2_round_trip(device: &Device) -> websd::tools::roundtrip::RoundTrip {
    let dir = fixtures().join("../../www/models/taef2");
    let taesd = Taesd::from_dir(&dir, device).expect("load TAEF2");
    assert_eq!(taesd.latent_channels(), 32);
    let photo = websd::image::decode_png("astronaut.png", &std::fs::read(dir.join("astronaut.png")).unwrap()).unwrap();
    let r = pollster::block_on(websd::tools::roundtrip::taesd_round_trip(&taesd, &photo, 256, 0, device)).unwrap();
    println!("TAEF2 256²: round trip {:.2} dB, random {:.2} dB, latents {:?} mean {:.3} std {:.3}", r.psnr_db, r.random_psnr_db, r.latent_shape, r.latent_mean, r.latent_std);
    assert_eq!(r.latent_shape, [1, 32, 32, 32]);
    let bound = websd::tools::roundtrip::taef2_passing_psnr_db(256).unwrap();
    assert!(r.psnr_db >= bound, "round trip {:.2} dB < {bound} dB", r.psnr_db);
    assert!(r.random_psnr_db < 15.0, "random latents reached {:.2} dB", r.random_psnr_db);
    r
}

#[test]
fn taef2_round_trips_a_photo_on_flex() {
    taef2_round_trip(&Device::flex());
}

#[test]
fn taef2_round_trips_a_photo_on_wgpu() {
    taef2_round_trip(&crate::common::wgpu_device());
}
