//! The parity runner (`websd parity`): finds every component fixture, runs every case, and turns
//! a broken fixture into failed rows instead of a crash.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::FloatDType;
use websd::tools::parity::{self, Row};

use crate::common::fixtures;

fn rows_of<'a>(rows: &'a [Row], component: &str) -> Vec<&'a Row> {
    rows.iter().filter(|r| r.component == component).collect()
}

#[test]
fn parity_runs_every_fixture_component_and_all_pass() {
    let rows = parity::run(&fixtures(), &Device::flex(), FloatDType::F32).unwrap();
    println!("{}", parity::table(&rows));
    let expected = [
        ("sd1/text_encoder", "text_encoder", 6),
        ("sd1/unet", "unet", 2),
        ("sd1_inpaint_unet", "unet", 2),
        ("sd1/vae", "vae", 6),
        ("sd2/text_encoder", "text_encoder", 6),
        ("sd2/unet", "unet", 2),
        ("sd2/vae", "vae", 6),
        // SDXL: the encoders' hidden_states[-2] without the final layer norm besides the usual
        // outputs, the second's projected text_embeds instead of pooled; the UNet with text_time.
        ("sdxl/text_encoder", "text_encoder", 8),
        ("sdxl/text_encoder_2", "text_encoder", 8),
        ("sdxl/unet", "unet", 3),
        ("taesd", "taesd", 4),
    ];
    for (component, kind, count) in expected {
        let found = rows_of(&rows, component);
        assert_eq!(found.len(), count, "{component}: rows");
        assert!(found.iter().all(|r| r.kind == kind), "{component}: kind");
    }
    assert_eq!(rows.len(), expected.iter().map(|e| e.2).sum::<usize>(), "no other rows");
    for r in &rows {
        assert_eq!(r.pass, Some(true), "{} {} {}: rel {:.2e} {:?}", r.component, r.case, r.output, r.rel, r.error);
        assert!(r.rel <= parity::F32_TOLERANCE && r.max_abs.is_finite());
    }
    // f16 is reported, never judged.
    let one = fixtures().join("taesd");
    let half = parity::run(&one, &Device::flex(), FloatDType::F16).unwrap();
    assert_eq!(half.len(), 4);
    assert!(half.iter().all(|r| r.pass.is_none() && r.error.is_none() && r.rel < 1e-2), "{}", parity::table(&half));
}

/// Copies a fixture component to a temporary folder, letting `edit` change its files.
fn broken_copy(component: &str, name: &str, edit: impl FnOnce(&Path)) -> std::path::PathBuf {
    let from = fixtures().join(component);
    let to = std::env::temp_dir().join(format!("websd-parity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
    }
    edit(&to);
    to
}

/// Rewrites a safetensors file through `change` (name, shape, f32 values → kept or not).
fn rewrite(path: &Path, change: impl Fn(&str, Vec<usize>, Vec<f32>) -> Option<(String, Vec<usize>, Vec<f32>)>) {
    use websd::weights::{SafetensorsSource, TensorSource};
    let source = SafetensorsSource::from_file(path).unwrap();
    let mut kept = Vec::new();
    for name in source.names() {
        let (values, shape) = source.read_f32(&name).unwrap();
        if let Some(t) = change(&name, shape, values) {
            kept.push(t);
        }
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        kept.iter().map(|(n, s, v)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v)).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn broken_fixtures_become_failed_rows() {
    // A weight missing: the component fails to load and says which tensor.
    let dir =
        broken_copy("taesd", "weights", |d| rewrite(&d.join("diffusion_pytorch_model.safetensors"), |n, s, v| (n != "decoder.layers.3.conv.2.weight").then(|| (n.into(), s, v))));
    let rows = parity::run(&dir, &Device::flex(), FloatDType::F32).unwrap();
    assert_eq!(rows.len(), 1);
    let error = rows[0].error.as_deref().unwrap();
    assert!(rows[0].is_failure() && error.contains("missing tensor `decoder.layers.3.conv.2.weight`"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();

    // A reference of the wrong shape and a changed reference: those rows fail, the others pass.
    let dir = broken_copy("taesd", "reference", |d| {
        rewrite(&d.join("parity.safetensors"), |n, mut s, mut v| {
            if n == "case0.encoded" {
                s[0] += 1;
                v.extend(v.clone());
            }
            if n == "case1.decoded" {
                v[0] += 0.5;
            }
            Some((n.into(), s, v))
        })
    });
    let rows = parity::run(&dir, &Device::flex(), FloatDType::F32).unwrap();
    let failed: Vec<(String, String)> = rows.iter().filter(|r| r.is_failure()).map(|r| (r.case.clone(), r.output.clone())).collect();
    assert_eq!(failed, vec![("case0".into(), "encoded".into()), ("case1".into(), "decoded".into())], "{}", parity::table(&rows));
    assert!(rows[0].error.as_deref().unwrap().contains("shape"));
    assert!(rows.iter().find(|r| r.case == "case1" && r.output == "decoded").unwrap().rel > 1e-4);
    std::fs::remove_dir_all(&dir).unwrap();
}
