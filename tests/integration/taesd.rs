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
