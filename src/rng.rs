//! Seeded Gaussian noise that is bit-identical on every platform: Philox4x32-10 (counter-based,
//! so any block is computed directly) and Box–Muller with our own `ln`/`sin`/`cos` built from
//! IEEE basic operations only (platform libm versions differ in the last bit).
//!
//! Image `b` of a batch uses seed `seed + b`, so a batch's image equals a single run with that seed.

use burn::prelude::*;
use burn::tensor::TensorData;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// The Philox4x32 block function with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        c = [((p1 >> 32) as u32) ^ c[1] ^ k[0], p1 as u32, ((p0 >> 32) as u32) ^ c[3] ^ k[1], p0 as u32];
    }
    c
}

/// ln(x) for x > 0 from basic operations: x = m·2^e with m in [√½, √2), then
/// ln m = 2·atanh((m−1)/(m+1)) as a series.
fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let mut term = s;
    let mut sum = 0.0;
    let mut k = 1.0;
    while k < 40.0 {
        sum += term / k;
        term *= s2;
        k += 2.0;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}

/// (sin θ, cos θ) for θ in [0, 2π) from Taylor series after reduction to [−π/4, π/4].
fn sin_cos(theta: f64) -> (f64, f64) {
    use std::f64::consts::FRAC_PI_2;
    let quadrant = (theta / FRAC_PI_2 + 0.5).floor();
    let r = theta - quadrant * FRAC_PI_2;
    let r2 = r * r;
    let (mut s, mut c) = (0.0, 0.0);
    let (mut ts, mut tc) = (r, 1.0);
    for n in 0..10 {
        s += ts;
        c += tc;
        let n = n as f64;
        ts *= -r2 / ((2.0 * n + 2.0) * (2.0 * n + 3.0));
        tc *= -r2 / ((2.0 * n + 1.0) * (2.0 * n + 2.0));
    }
    match (quadrant as i64).rem_euclid(4) {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    }
}

/// `n` standard normal values for (`seed`, `stream`). Streams separate independent uses of one
/// seed (the initial latents, each sampler step's noise, img2img noise).
pub fn gaussian(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let key = [seed as u32, (seed >> 32) as u32];
    let mut out = Vec::with_capacity(n + 3);
    let mut block = 0u32;
    while out.len() < n {
        let x = philox4x32_10([block, stream as u32, (stream >> 32) as u32, 0], key);
        for pair in x.chunks(2) {
            // Uniforms in (0, 1): never 0, so ln is finite.
            let u1 = (pair[0] as f64 + 0.5) / 4_294_967_296.0;
            let u2 = (pair[1] as f64 + 0.5) / 4_294_967_296.0;
            let r = (-2.0 * ln(u1)).sqrt();
            let (s, c) = sin_cos(2.0 * std::f64::consts::PI * u2);
            out.push((r * c) as f32);
            out.push((r * s) as f32);
        }
        block += 1;
    }
    out.truncate(n);
    out
}

/// Noise for a batch: `[batch, c, h, w]` where image b uses seed `seed + b`.
pub fn batch_noise(seed: u64, stream: u64, batch: usize, [c, h, w]: [usize; 3], device: &Device) -> Tensor<4> {
    let per = c * h * w;
    let values: Vec<f32> = (0..batch).flat_map(|b| gaussian(seed.wrapping_add(b as u64), stream, per)).collect();
    Tensor::from_data(TensorData::new(values, [batch, c, h, w]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors published with Random123 (kat_vectors, philox4x32_10).
    #[test]
    fn philox_known_answers() {
        assert_eq!(philox4x32_10([0, 0, 0, 0], [0, 0]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
        assert_eq!(philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]), [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]);
    }

    #[test]
    fn math_matches_std_closely() {
        for &x in &[1e-9, 0.001, 0.3, 0.5, 0.9999, 1.0, 2.0] {
            assert!((ln(x) - x.ln()).abs() < 1e-14, "ln({x})");
        }
        for i in 0..1000 {
            let t = i as f64 * 0.00628;
            let (s, c) = sin_cos(t);
            assert!((s - t.sin()).abs() < 1e-14 && (c - t.cos()).abs() < 1e-14, "sin_cos({t})");
        }
    }

    #[test]
    fn gaussian_statistics_and_streams() {
        let v = gaussian(42, 0, 200_000);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
        assert_eq!(gaussian(42, 0, 10), v[..10].to_vec(), "same seed, same values");
        assert_ne!(gaussian(42, 1, 10), v[..10].to_vec(), "streams differ");
        assert_ne!(gaussian(43, 0, 10), v[..10].to_vec(), "seeds differ");
    }

    #[test]
    fn batch_image_b_equals_a_single_run_with_seed_plus_b() {
        let device = Device::flex();
        let batch: Vec<f32> = batch_noise(7, 0, 3, [4, 2, 3], &device).into_data().try_to_vec().unwrap();
        let third: Vec<f32> = batch_noise(9, 0, 1, [4, 2, 3], &device).into_data().try_to_vec().unwrap();
        assert_eq!(&batch[48..], &third[..]);
    }
}
