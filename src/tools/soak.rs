//! `websd generate --soak N`: many generations in one process, the way a page is used for an
//! afternoon, with the GPU memory burn's allocator holds read after each. It must level off: a
//! run that holds more than [`GROWTH`] × the most the first [`WARMUP`] runs held is a leak (the
//! browser's soak test checks the same bound in the page, tests/e2e/soak.test.mjs).

use crate::pipeline::StableDiffusion;
use crate::pipeline::generate::Settings;
use burn::prelude::Device;

use crate::error::{Error, Result};

/// Runs before the bound is set: the first runs compile kernels and fill the allocator's pools.
pub const WARMUP: usize = 5;
/// How far past the warm-up's peak a later run may go.
pub const GROWTH: f64 = 1.10;

/// One generation of the soak and what the GPU held after it.
pub struct SoakRun {
    pub seed: u64,
    pub batch: usize,
    pub cancelled: bool,
    /// Bytes reserved by burn's allocator (its pools included) and in live tensors.
    pub reserved: u64,
    pub in_use: u64,
}

/// `runs` generations of `settings` with seeds `seed`, `seed + 1`, …; the batch alternates
/// between 1 and `settings.batch_count`, and every fifth run is cancelled after its first step.
pub async fn soak(sd: &StableDiffusion, settings: &Settings, model_name: &str, device: &Device, runs: usize, mut report: impl FnMut(usize, &SoakRun)) -> Result<Vec<SoakRun>> {
    let mut out = Vec::with_capacity(runs);
    for i in 0..runs {
        let cancel = i % 5 == 4;
        let s = Settings { seed: settings.seed + i as u64, batch_count: if i % 2 == 0 { 1 } else { settings.batch_count }, ..settings.clone() };
        let result = sd.generate_images(&s, model_name, |done, _, _| async move { !cancel || done < 1 }).await;
        match (result, cancel) {
            (Ok(_), false) | (Err(Error::Cancelled), true) => {}
            (Ok(_), true) => return Err(Error::Other(format!("soak run {i} was not cancelled"))),
            (Err(e), _) => return Err(e),
        }
        let usage = device.memory_pool_usage().ok_or_else(|| Error::Other("this backend does not report its GPU memory: run the soak on wgpu".into()))?;
        let run = SoakRun { seed: s.seed, batch: s.batch_count, cancelled: cancel, reserved: usage.bytes_reserved, in_use: usage.bytes_in_use };
        report(i, &run);
        out.push(run);
    }
    Ok(out)
}

/// The first run after the warm-up that holds more than the bound, in words; None if none does.
pub fn growth(runs: &[SoakRun]) -> Option<String> {
    let peak = runs.iter().take(WARMUP).map(|r| r.reserved).max()?;
    let bound = (peak as f64 * GROWTH) as u64;
    let (i, r) = runs.iter().enumerate().skip(WARMUP).find(|(_, r)| r.reserved > bound)?;
    Some(format!("GPU memory grew: run {i} holds {} bytes, over {bound} ({GROWTH} × the {peak} of the first {WARMUP} runs' peak)", r.reserved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(reserved: &[u64]) -> Vec<SoakRun> {
        reserved.iter().map(|&r| SoakRun { seed: 0, batch: 1, cancelled: false, reserved: r, in_use: r / 2 }).collect()
    }

    #[test]
    fn growth_is_measured_from_the_warm_up_peak() {
        // The pools fill during the warm-up (here up to 120): later runs may go to 132.
        assert_eq!(growth(&runs(&[100, 120, 110, 115, 118, 132, 130, 125])), None);
        let leak = growth(&runs(&[100, 120, 110, 115, 118, 125, 133])).expect("133 > 1.1 × 120");
        assert!(leak.contains("run 6 holds 133 bytes, over 132"), "{leak}");
        // Too few runs to set a bound or to test one: nothing to say.
        assert_eq!(growth(&runs(&[])), None);
        assert_eq!(growth(&runs(&[100, 900])), None);
    }
}
