//! Shared helpers: fixture paths, reading references, comparing outputs.

use std::path::PathBuf;

use burn::prelude::*;
use websd::weights::SafetensorsSource;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The fixture's reference tensors (`parity.safetensors` in a component folder).
pub fn parity(component: &str) -> SafetensorsSource {
    SafetensorsSource::from_file(fixtures().join(component).join("parity.safetensors")).expect("parity file")
}

pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.cast(burn::tensor::FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// ‖a − b‖ / ‖b‖, as `websd parity` computes it (one definition for the tests and the tool).
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "compared tensors differ in size");
    websd::tools::compare::errors(a, b).1
}

/// Asserts `out` matches reference `name` within `tol` relative error; returns the error.
pub fn assert_close<const D: usize>(what: &str, out: Tensor<D>, reference: &SafetensorsSource, name: &str, tol: f32) -> f32 {
    let (expected, shape) = reference.read_f32(name).expect("reference tensor");
    assert_eq!(out.dims().to_vec(), shape, "{what}: shape");
    let got = values(out);
    assert!(got.iter().all(|v| v.is_finite()), "{what}: non-finite output");
    let err = rel_err(&got, &expected);
    println!("{what}: relative error {err:.2e}");
    assert!(err <= tol, "{what}: relative error {err:.2e} > {tol:.0e}");
    err
}

/// The native wgpu device (Vulkan; lavapipe on machines without a GPU), opened once per test run.
pub fn wgpu_device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let (device, info) = pollster::block_on(websd::gpu::open_gpu()).expect("a Vulkan adapter (apt-get install mesa-vulkan-drivers)");
            println!("wgpu adapter: {} ({}, {})", info.adapter, info.backend, info.driver);
            device
        })
        .clone()
}
