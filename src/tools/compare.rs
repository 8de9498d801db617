//! How far an output is from its reference: one definition for `websd parity`, the kernels'
//! self-check (native and in the browser) and the tests.

/// (max |a − b|, ‖a − b‖ / ‖b‖), in f64 sums.
pub fn errors(out: &[f32], reference: &[f32]) -> (f32, f32) {
    let mut max = 0f32;
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in out.iter().zip(reference) {
        let d = a - b;
        max = if d.is_nan() { f32::NAN } else { max.max(d.abs()) };
        num += (d as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (max, (num / den.max(1e-30)).sqrt() as f32)
}
