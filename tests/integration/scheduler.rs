//! Every sampler replays diffusers' recorded trace: the same timesteps and sigmas, and from the
//! same inputs (and recorded noise) the same prev_sample and denoised at every step.

use burn::prelude::*;
use websd::scheduler::{Scheduler, SchedulerConfig, SchedulerKind, ddim::Ddim};
use websd::weights::SafetensorsSource;

use crate::common::{fixtures, rel_err, values};

fn replay(name: &str) {
    let dir = fixtures().join("schedulers");
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let trace = SafetensorsSource::from_file(dir.join(format!("{name}.safetensors"))).unwrap();
    let config = SchedulerConfig::from_json(&meta["config"].to_string()).unwrap();
    let steps = meta["num_inference_steps"].as_u64().unwrap() as usize;
    let class = meta["class"].as_str().unwrap();
    let eta = meta["step_kwargs"]["eta"].as_f64().unwrap_or(0.0);
    let mut scheduler: Box<dyn Scheduler> = if eta > 0.0 {
        Box::new(Ddim::new(&config, steps, eta).unwrap())
    } else {
        SchedulerKind::from_class(class, config.use_karras_sigmas).unwrap().build(&config, steps).unwrap()
    };
    let device = Device::flex();

    let (timesteps, _) = trace.read_f32("timesteps").unwrap();
    let ours: Vec<f32> = scheduler.timesteps().iter().map(|&t| t as f32).collect();
    assert_eq!(ours, timesteps, "{name}: timesteps");
    if let Ok((sigmas, _)) = trace.read_f32("sigmas") {
        let ours: Vec<f32> = scheduler.sigmas().expect("sampler has sigmas").iter().map(|&s| s as f32).collect();
        assert!(rel_err(&ours, &sigmas) < 1e-6, "{name}: sigmas {ours:?} vs {sigmas:?}");
    }
    let init = meta["init_noise_sigma"].as_f64().unwrap();
    assert!((scheduler.init_noise_sigma() - init).abs() <= 1e-5 * init, "{name}: init_noise_sigma {} vs {init}", scheduler.init_noise_sigma());

    let mut worst = 0f32;
    for i in 0..timesteps.len() {
        let get = |n: &str| trace.tensor::<4>(&format!("step{i}.{n}"), &device);
        let sample = get("sample").unwrap();
        let scaled = scheduler.scale_model_input(sample.clone(), i);
        let expected_scaled = trace.read_f32(&format!("step{i}.scaled_sample")).unwrap().0;
        assert!(rel_err(&values(scaled), &expected_scaled) < 1e-6, "{name} step {i}: scale_model_input");
        let noise = if scheduler.needs_noise(i) { Some(get("noise").expect("trace recorded the noise")) } else { None };
        let out = scheduler.step(get("model_output").unwrap(), i, sample, noise).unwrap();
        let err = rel_err(&values(out.prev_sample), &trace.read_f32(&format!("step{i}.prev_sample")).unwrap().0);
        assert!(err < 1e-5, "{name} step {i}: prev_sample relative error {err:.2e}");
        worst = worst.max(err);
        if let Ok((denoised, _)) = trace.read_f32(&format!("step{i}.denoised")) {
            let err = rel_err(&values(out.denoised), &denoised);
            assert!(err < 1e-5, "{name} step {i}: denoised relative error {err:.2e}");
        }
    }
    println!("{name}: {} steps, worst prev_sample relative error {worst:.2e}", timesteps.len());
}

macro_rules! trace_tests {
    ($($name:ident),*) => { $( #[test] fn $name() { replay(stringify!($name)); } )* };
}

trace_tests!(
    ddim,
    ddim_eta,
    ddim_trailing_vpred,
    euler,
    euler_leading,
    euler_vpred_trailing,
    euler_ancestral,
    dpmpp_2m,
    dpmpp_2m_karras,
    lcm,
    pndm,
    lms,
    sd_turbo,
    ddim_clip,
    lcm_clip
);

/// Every sampler × timestep_spacing × step count (1..=50 and up to 500) lays out the same
/// timesteps as diffusers' `set_timesteps` (`make_scheduler_fixtures.py`, timesteps.json).
#[test]
fn timesteps_equal_diffusers_for_every_step_count() {
    let tables: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("schedulers/timesteps.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (class, spacings) in tables.as_object().unwrap() {
        let kind = SchedulerKind::from_class(class, false).unwrap_or_else(|| panic!("no sampler for {class}"));
        for (spacing, rows) in spacings.as_object().unwrap() {
            let config = SchedulerConfig::from_json(&format!(
                r#"{{"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
                    "steps_offset": 1, "set_alpha_to_one": false, "skip_prk_steps": true, "timestep_spacing": "{spacing}"}}"#
            ))
            .unwrap();
            for (steps, expected) in rows.as_object().unwrap() {
                let steps: usize = steps.parse().unwrap();
                // Compared in f32: some samplers keep f64 timesteps, some f32.
                let expected: Vec<f32> = expected.as_array().unwrap().iter().map(|t| t.as_f64().unwrap() as f32).collect();
                let ours: Vec<f32> = kind.build(&config, steps).unwrap().timesteps().iter().map(|&t| t as f32).collect();
                assert_eq!(ours, expected, "{class} {spacing} {steps} steps");
                checked += 1;
            }
        }
    }
    assert!(checked > 700, "only {checked} tables checked");
}
