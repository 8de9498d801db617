//! `websd bench` on the full-size SD 1.5 configs at a tiny size on the CPU, and on the test model's
//! architecture (from its manifest): every row is there with finite times and outputs, and the
//! table prints them. Structure only, not speed.

use burn::prelude::*;
use websd::tools::bench::{self, Model, Options, Part};

#[test]
fn bench_reports_every_component() {
    let opts = Options {
        model: Model::parse("sd15").unwrap(),
        size: 16,
        runs: 2,
        warmup: 0,
        parts: Part::parse_list("text,unet,vae,taesd,image").unwrap(),
        steps: Some(1),
        ..Options::default()
    };
    let mut heard = Vec::new();
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |row| heard.push(row.component.clone()))).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.component.as_str()).collect();
    assert_eq!(names, ["text encoder", "UNet step, batch 2 (CFG)", "UNet step, batch 1", "VAE decode", "TAESD decode", "txt2img image, 1 Euler steps, CFG"]);
    assert_eq!(heard, names, "each row is reported as it is measured");
    let table = bench::table(&report);
    for row in &report.rows {
        assert_eq!(row.times_ms.len(), 2, "{}: one time per run", row.component);
        assert!(row.median_ms().is_finite() && row.median_ms() > 0.0, "{}: median {}", row.component, row.median_ms());
        assert!(row.finite, "{}: non-finite output", row.component);
        let tflops = row.tflops().expect("every SD 1.5 row has an operation count");
        assert!(tflops.is_finite() && tflops > 0.0, "{}: {tflops} TFLOP/s", row.component);
        assert!(table.contains(&row.component), "table lacks {}:\n{table}", row.component);
    }
    // The CFG batch is twice the work of one image.
    let unet2 = report.rows[1].tflop.unwrap();
    assert!((unet2 / report.rows[2].tflop.unwrap() - 2.0).abs() < 1e-9);
    // The text encoder's count from its config equals torch's flop counter on transformers'
    // CLIPTextModel (13.30 GFLOP for SD 1.x, 45.13 for SD 2.x).
    use websd::model::clip::ClipConfig;
    assert!((bench::text_tflop(&ClipConfig::sd1()) * 1e3 - 13.2985).abs() < 1e-3);
    assert!((bench::text_tflop(&ClipConfig::sd2()) * 1e3 - 45.1272).abs() < 1e-3);
    println!("{table}");
}

/// A converted model's architecture (the tiny test model): every row runs; rows without a known
/// operation count show "—".
#[test]
fn bench_runs_a_converted_models_architecture() {
    let manifest = websd::weights::Manifest::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/tiny-sd1/manifest.json")).unwrap()).unwrap();
    let opts = Options {
        model: Model::from_manifest(&manifest).unwrap(),
        size: 32,
        runs: 1,
        warmup: 1,
        parts: Part::parse_list("text,unet,vae,taesd,image").unwrap(),
        steps: Some(2),
        ..Options::default()
    };
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |_| {})).unwrap();
    assert_eq!(report.rows.len(), 6);
    assert!(report.rows.iter().all(|r| r.finite && r.times_ms.len() == 1));
    assert!(report.rows[0].tflop.is_some(), "the text encoder's count comes from its config");
    assert!(report.rows[1..].iter().all(|r| r.tflop.is_none()), "no operation counts for a custom UNet or VAE");
    let table = bench::table(&report);
    assert!(table.starts_with("websd bench: model tiny-sd1 at 32×32"), "{table}");
    assert!(table.contains("—"), "{table}");
}

/// `--only lora`: the UNet's load alone and with a LoRA on every attention and feed-forward
/// projection merged in, one time per run.
#[test]
fn bench_times_a_unet_load_with_and_without_a_lora() {
    let manifest = websd::weights::Manifest::parse(&std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models/tiny-sd1/manifest.json")).unwrap()).unwrap();
    let opts = Options { model: Model::from_manifest(&manifest).unwrap(), size: 32, runs: 2, warmup: 0, parts: Part::parse_list("lora").unwrap(), ..Options::default() };
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |_| {})).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.component.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], "UNet load (random weights)");
    let layers: usize =
        names[1].strip_prefix("UNet load + LoRA r16 (").and_then(|r| r.strip_suffix(" layers)")).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{}", names[1]));
    // Each transformer block has 10: to_q/k/v/out of its self- and cross-attention, two feed-forward.
    assert!(layers > 0 && layers.is_multiple_of(10), "{layers} layers");
    assert!(report.rows.iter().all(|r| r.times_ms.len() == 2 && r.median_ms() > 0.0));
}

/// `--ops`: SD 1.5's hot ops one by one at an image size's real shapes, each with its work where it
/// is arithmetic (convs, projections, attention) and a finite output; a size the UNet's deepest
/// level cannot take is refused; `--match` keeps the rows that name it.
#[test]
fn bench_times_the_hot_ops_one_by_one() {
    let opts = Options { size: 64, runs: 1, warmup: 0, parts: Part::parse_list("ops").unwrap(), ..Options::default() };
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |_| {})).unwrap();
    let count = |what: &str| report.rows.iter().filter(|r| r.component.contains(what)).count();
    assert_eq!((count(": conv3x3"), count("as 9 matmuls"), count(": linear"), count(": attention"), count(": GroupNorm")), (14, 7, 6, 5, 2), "{}", bench::table(&report));
    for row in &report.rows {
        assert!(row.finite && row.times_ms.len() == 1, "{}", row.component);
        assert_eq!(row.tflop.is_some(), !row.component.contains("GroupNorm"), "{}", row.component);
    }
    // The level-0 conv at 64²: 2 · batch 2 · 320 · 320 · 9 · 8² multiply-adds.
    assert!((report.rows[0].tflop.unwrap() - 2.0 * 2.0 * 320.0 * 320.0 * 9.0 * 64.0 / 1e12).abs() < 1e-15);
    let refused = pollster::block_on(bench::run(&Options { size: 96, ..opts }, &Device::flex(), "flex (CPU)", |_| {})).err().expect("96 is refused");
    assert!(refused.to_string().contains("multiple of 64"), "{refused}");
    // `--match`: only the rows whose name contains the text.
    let opts = Options { size: 64, runs: 1, warmup: 0, parts: Part::parse_list("ops").unwrap(), ops_matching: Some("GroupNorm".into()), ..Options::default() };
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |_| {})).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.component.as_str()).collect();
    assert_eq!(names, ["UNet level 0: GroupNorm+SiLU 320ch 8² ×2", "VAE decoder level 2: GroupNorm+SiLU 256ch 32² ×1"]);
}

/// The 3×3 conv as nine shifted matmuls equals burn's conv2d, on the CPU and on wgpu, at awkward
/// shapes: odd channel counts, in ≠ out channels, a non-square image, batch 1 and 2, with and
/// without a bias.
#[test]
fn a_conv3x3_as_nine_matmuls_equals_conv2d() {
    use burn::tensor::Distribution;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use websd::model::conv::conv3x3_as_matmuls;
    for device in [Device::flex(), crate::common::wgpu_device()] {
        for (batch, cin, cout, h, w, bias) in [(1, 3, 5, 7, 9, true), (2, 17, 33, 6, 5, false), (2, 40, 24, 1, 1, true)] {
            let x = Tensor::<4>::random([batch, cin, h, w], Distribution::Normal(0.0, 1.0), &device);
            let k = Tensor::<4>::random([cout, cin, 3, 3], Distribution::Normal(0.0, 0.3), &device);
            let b = bias.then(|| Tensor::<1>::random([cout], Distribution::Normal(0.0, 1.0), &device));
            let expected = crate::common::values(conv2d(x.clone(), k.clone(), b.clone(), ConvOptions::new([1, 1], [1, 1], [1, 1], 1)));
            let out = conv3x3_as_matmuls(x, k, b);
            assert_eq!(out.dims(), [batch, cout, h, w]);
            let err = crate::common::rel_err(&crate::common::values(out), &expected);
            assert!(err < 1e-5, "{batch}×{cin}→{cout} {h}×{w} bias {bias}: relative error {err}");
        }
    }
}

/// Our implicit-GEMM 3×3 conv kernel on wgpu (lavapipe here) equals the conv computed in f64, in
/// f32 (≤ 1e-5 relative) and f16 (≤ 2e-3), at the awkward shapes of
/// `kernels::check::CONV3X3_CASES` (the browser test runs the same list).
#[test]
fn our_conv3x3_kernel_equals_the_exact_conv() {
    use burn::tensor::FloatDType;
    let device = crate::common::wgpu_device();
    let checks = pollster::block_on(websd::kernels::check::check_conv3x3(&device, &[FloatDType::F32, FloatDType::F16])).unwrap();
    assert_eq!(checks.len(), 2 * websd::kernels::check::CONV3X3_CASES.len());
    assert_checks(&checks);
}

/// Our GroupNorm(+SiLU) kernel equals GroupNorm(+SiLU) computed in f64 (≤ 1e-5 relative in f32,
/// ≤ 2e-3 in f16), at the shapes of `kernels::check::GROUP_NORM_CASES`: groups of one channel and of
/// many, odd pixel counts, a group longer than one reduction chunk, a mean far from zero.
#[test]
fn our_group_norm_kernel_equals_the_exact_group_norm() {
    use burn::tensor::FloatDType;
    let device = crate::common::wgpu_device();
    let checks = pollster::block_on(websd::kernels::check::check_group_norm(&device, &[FloatDType::F32, FloatDType::F16])).unwrap();
    assert_eq!(checks.len(), 2 * websd::kernels::check::GROUP_NORM_CASES.len());
    assert_checks(&checks);
}

/// Our matmul kernel equals the f64 matmul (≤ 1e-5 relative in f32, ≤ 2e-3 in f16) at the shapes
/// of `kernels::check::MATMUL_CASES`: transposed and broadcast operands, a bias, every tiling.
#[test]
fn our_matmul_kernel_equals_the_exact_matmul() {
    use burn::tensor::FloatDType;
    let device = crate::common::wgpu_device();
    let checks = pollster::block_on(websd::kernels::check::check_matmul(&device, &[FloatDType::F32, FloatDType::F16])).unwrap();
    assert_eq!(checks.len(), 2 * websd::kernels::check::MATMUL_CASES.len());
    assert_checks(&checks);
}

/// Our fused attention kernel equals softmax(q·kᵀ/√d)·v computed in f64 (≤ 1e-5 relative in f32,
/// ≤ 2e-3 in f16) at the shapes of `kernels::check::ATTENTION_CASES`: partial blocks of queries
/// and keys, one key, SD's head dims and the VAE's 512, scores far apart, q read transposed.
#[test]
fn our_attention_kernel_equals_the_exact_attention() {
    use burn::tensor::FloatDType;
    let device = crate::common::wgpu_device();
    let checks = pollster::block_on(websd::kernels::check::check_attention(&device, &[FloatDType::F32, FloatDType::F16])).unwrap();
    assert_eq!(checks.len(), 2 * websd::kernels::check::ATTENTION_CASES.len());
    assert_checks(&checks);
}

fn assert_checks(checks: &[websd::kernels::check::Check]) {
    for c in checks {
        println!("{} {}: relative error {:.2e}", c.dtype, c.case, c.relative_error);
    }
    for c in checks {
        assert!(c.passed(), "{} {}: relative error {} over {}", c.dtype, c.case, c.relative_error, c.tolerance);
    }
}

/// `--only unet-stock` times the batch-2 UNet step with burn's ops in every layer (our kernels
/// off), before the model's own rows, and turns our kernels back on afterwards.
#[test]
fn bench_times_the_unet_with_the_stock_ops_beside_its_own() {
    let opts = Options { size: 16, runs: 1, warmup: 0, parts: Part::parse_list("unet,unet-stock").unwrap(), ..Options::default() };
    let report = pollster::block_on(bench::run(&opts, &Device::flex(), "flex (CPU)", |_| {})).unwrap();
    let names: Vec<&str> = report.rows.iter().map(|r| r.component.as_str()).collect();
    assert_eq!(names, ["UNet step, batch 2 (CFG), burn's stock ops", "UNet step, batch 2 (CFG)", "UNet step, batch 1"]);
    assert!(report.rows.iter().all(|r| r.finite && r.tflop.is_some()));
    assert_eq!(report.rows[0].tflop, report.rows[1].tflop, "the same work both ways");
    assert!(websd::kernels::use_own(&crate::common::wgpu_device()), "our kernels are back on after the stock row");
}
