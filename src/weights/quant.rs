//! Weight quantization: q8 (per output row, symmetric int8, f16 scale) and q4 (blocks of 32
//! along a row, 4-bit, f16 scale, optionally an f16 min).
//!
//! The converter quantizes on the CPU; loading dequantizes ON THE DEVICE: the packed bytes go up
//! as i32 words (the one integer type every backend, WebGPU included, has), are unpacked with
//! shifts and masks, converted to float and multiplied by the scales. No f32 copy of the model is
//! built on the CPU; large tensors are decoded in row chunks so no temporary buffer exceeds
//! WebGPU's 128 MiB binding limit.

// burn slices a 1-D tensor with an array of one range (`.slice([0..n])`), which clippy mistakes
// for a vec of ranges.
#![allow(clippy::single_range_in_vec_init)]

use burn::prelude::*;
use burn::tensor::{DType, TensorCreationOptions, TensorData};
use half::f16;

use super::manifest::Q4_BLOCK;

/// Rows × row length; a tensor of shape [d0, d1, …] is [d0, d1·d2·…] here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
}

/// A quantized tensor: packed data, f16 scales, and (q4 with offset) f16 mins.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantized {
    pub data: Vec<u8>,
    pub scales: Vec<f16>,
    pub mins: Option<Vec<f16>>,
}

/// q8: per row, scale = max|x| / 127, q = round(x / scale) as two's-complement int8.
pub fn quantize_q8(values: &[f32], m: Matrix) -> Quantized {
    assert_eq!(values.len(), m.rows * m.cols, "quantize_q8: size");
    let mut data = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(m.rows);
    for row in values.chunks_exact(m.cols.max(1)) {
        let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
        // Quantize with the scale as stored (f16-rounded), so dequantization matches exactly.
        let scale = f16::from_f32(max / 127.0);
        let s = scale.to_f32();
        let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
        data.extend(row.iter().map(|v| ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8));
        scales.push(scale);
    }
    Quantized { data, scales, mins: None }
}

/// q4, blocks of [`Q4_BLOCK`] along each row (`m.cols` must divide by it). Without offset
/// (`with_min` false): the value of largest magnitude maps to −8, d = it / −8,
/// q = clamp(round(x / d) + 8, 0, 15), value = (q − 8)·d — all 16 levels in use.
/// With offset: d = (max − min) / 15, q = round((x − min) / d), value = q·d + min.
/// Two values per byte: element 2i in the low nibble of byte i, 2i+1 in the high nibble.
pub fn quantize_q4(values: &[f32], m: Matrix, with_min: bool) -> Quantized {
    assert_eq!(values.len(), m.rows * m.cols, "quantize_q4: size");
    assert_eq!(m.cols % Q4_BLOCK, 0, "quantize_q4: row length must divide by {Q4_BLOCK}");
    let blocks = values.len() / Q4_BLOCK;
    let mut scales = Vec::with_capacity(blocks);
    let mut mins = Vec::with_capacity(if with_min { blocks } else { 0 });
    let mut codes = Vec::with_capacity(values.len());
    for block in values.chunks_exact(Q4_BLOCK) {
        if with_min {
            let lo = block.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let min = f16::from_f32(lo);
            let scale = f16::from_f32((hi - min.to_f32()) / 15.0);
            let (m0, s) = (min.to_f32(), scale.to_f32());
            let inv = if s > 0.0 { 1.0 / s } else { 0.0 };
            codes.extend(block.iter().map(|v| ((v - m0) * inv).round().clamp(0.0, 15.0) as u8));
            scales.push(scale);
            mins.push(min);
        } else {
            let extreme = block.iter().copied().fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
            let scale = f16::from_f32(extreme / -8.0);
            let s = scale.to_f32();
            let inv = if s != 0.0 { 1.0 / s } else { 0.0 };
            codes.extend(block.iter().map(|v| ((v * inv).round() + 8.0).clamp(0.0, 15.0) as u8));
            scales.push(scale);
        }
    }
    let data = codes.chunks_exact(2).map(|p| p[0] | (p[1] << 4)).collect();
    Quantized { data, scales, mins: with_min.then_some(mins) }
}

/// CPU dequantization (the converter's error report and tests; loading uses the device path).
pub fn dequantize_cpu(q: &Quantized, m: Matrix, q4: bool) -> Vec<f32> {
    if !q4 {
        return q.data.chunks_exact(m.cols.max(1)).zip(&q.scales).flat_map(|(row, s)| row.iter().map(move |&b| (b as i8) as f32 * s.to_f32())).collect();
    }
    let codes = q.data.iter().flat_map(|b| [b & 15, b >> 4]);
    let per_block = |i: usize| (i / Q4_BLOCK, q.scales[i / Q4_BLOCK].to_f32());
    codes
        .enumerate()
        .map(|(i, c)| {
            let (b, s) = per_block(i);
            match &q.mins {
                Some(mins) => c as f32 * s + mins[b].to_f32(),
                None => (c as f32 - 8.0) * s,
            }
        })
        .collect()
}

/// Bytes as little-endian i32 words (zero-padded to a multiple of 4).
fn words(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            i32::from_le_bytes(w)
        })
        .collect()
}

fn int_words(bytes: &[u8], device: &Device) -> Tensor<1, Int> {
    let w = words(bytes);
    let n = w.len();
    Tensor::from_data(TensorData::new(w, [n]), TensorCreationOptions::new(device.clone()).with_dtype(DType::I32))
}

/// Splits each i32 word into `per_word` fields of `bits` bits (lowest first) → [words·per_word].
fn unpack(words: Tensor<1, Int>, bits: u32, per_word: usize) -> Tensor<1, Int> {
    let mask = (1i64 << bits) - 1;
    let n = words.dims()[0];
    let fields: Vec<Tensor<1, Int>> = (0..per_word).map(|k| words.clone().bitwise_right_shift_scalar((k as u32 * bits) as i64).bitwise_and_scalar(mask)).collect();
    Tensor::stack::<2>(fields, 1).reshape([n * per_word])
}

/// f16 values as an f32 tensor on `device` (small vectors: converted on the CPU).
pub fn f16_to_device(values: &[f16], device: &Device) -> Tensor<1> {
    let v: Vec<f32> = values.iter().map(|x| x.to_f32()).collect();
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// Rows decoded per device step: keeps every temporary (i32 codes, f32 values) near 16 MiB.
fn chunk_rows(cols: usize) -> usize {
    ((4 << 20) / cols.max(1)).max(1)
}

/// Dequantizes q8 `data` (two's-complement int8, row-major) with per-row `scales` on the device.
pub fn dequantize_q8(data: &[u8], scales: &[f16], m: Matrix, device: &Device) -> Tensor<1> {
    let step = chunk_rows(m.cols);
    let parts: Vec<Tensor<1>> = (0..m.rows)
        .step_by(step)
        .map(|r0| {
            let r1 = (r0 + step).min(m.rows);
            let n = (r1 - r0) * m.cols;
            let bytes = unpack(int_words(&data[r0 * m.cols..r1 * m.cols], device), 8, 4).slice([0..n]);
            // Sign-extend a byte b: ((b + 128) & 255) − 128.
            let q = bytes.add_scalar(128).bitwise_and_scalar(255).sub_scalar(128).float();
            let s = f16_to_device(&scales[r0..r1], device).reshape([r1 - r0, 1]);
            (q.reshape([r1 - r0, m.cols]) * s).reshape([n])
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// Dequantizes q4 `data` (nibbles, low first) with per-block `scales` (and `mins`) on the device.
pub fn dequantize_q4(data: &[u8], scales: &[f16], mins: Option<&[f16]>, m: Matrix, device: &Device) -> Tensor<1> {
    let step = chunk_rows(m.cols);
    let blocks_per_row = m.cols / Q4_BLOCK;
    let parts: Vec<Tensor<1>> = (0..m.rows)
        .step_by(step)
        .map(|r0| {
            let r1 = (r0 + step).min(m.rows);
            let n = (r1 - r0) * m.cols;
            let bytes = &data[r0 * m.cols / 2..r1 * m.cols / 2];
            let codes = unpack(int_words(bytes, device), 4, 8).slice([0..n]).float();
            let (b0, b1) = (r0 * blocks_per_row, r1 * blocks_per_row);
            let nb = b1 - b0;
            let s = f16_to_device(&scales[b0..b1], device).reshape([nb, 1]);
            let codes = codes.reshape([nb, Q4_BLOCK]);
            let values = match mins {
                Some(mins) => codes * s + f16_to_device(&mins[b0..b1], device).reshape([nb, 1]),
                None => codes.sub_scalar(8.0) * s,
            };
            values.reshape([n])
        })
        .collect();
    Tensor::cat(parts, 0)
}

/// Reads little-endian f16 values.
pub fn read_f16(bytes: &[u8]) -> Vec<f16> {
    bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect()
}

/// ‖a − b‖ / ‖b‖ (f64 accumulation).
pub fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        // A small deterministic generator (xorshift + Box–Muller) so the test needs no crate.
        let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                let (u, v) = (next(), next());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32 * 0.05
            })
            .collect()
    }

    #[test]
    fn device_dequantization_matches_cpu() {
        let device = Device::flex();
        let m = Matrix { rows: 37, cols: 96 };
        let x = gaussian(m.rows * m.cols, 7);
        for (q4, with_min) in [(false, false), (true, false), (true, true)] {
            let q = if q4 { quantize_q4(&x, m, with_min) } else { quantize_q8(&x, m) };
            let cpu = dequantize_cpu(&q, m, q4);
            let dev = if q4 { dequantize_q4(&q.data, &q.scales, q.mins.as_deref(), m, &device) } else { dequantize_q8(&q.data, &q.scales, m, &device) };
            let dev = dev.into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(dev, cpu, "q4={q4} min={with_min}: device and CPU dequantization differ");
        }
    }

    /// Gaussian weights (what trained layers look like to first order): error of each scheme.
    #[test]
    fn quantization_error_on_gaussian_weights() {
        let m = Matrix { rows: 256, cols: 1024 };
        let x = gaussian(m.rows * m.cols, 3);
        let q8 = relative_error(&dequantize_cpu(&quantize_q8(&x, m), m, false), &x);
        let q4 = relative_error(&dequantize_cpu(&quantize_q4(&x, m, false), m, true), &x);
        let q4m = relative_error(&dequantize_cpu(&quantize_q4(&x, m, true), m, true), &x);
        println!("gaussian 256x1024: q8 {q8:.4e}  q4 {q4:.4e}  q4+min {q4m:.4e}");
        // Uniform rounding noise: q8 ≈ max/127/√12 per value over σ; with ~4.5σ row maxima ≈ 1%.
        assert!(q8 < 0.012, "q8 {q8}");
        // 16 levels over a block's ±2.5σ range ≈ 9%.
        assert!(q4 < 0.11, "q4 {q4}");
        assert!(q4m < 0.12, "q4+min {q4m}");
    }

    #[test]
    fn zero_rows_and_extremes() {
        let m = Matrix { rows: 2, cols: 32 };
        let mut x = vec![0.0; 64];
        x[40] = -3.0;
        x[41] = 3.0;
        let q = quantize_q4(&x, m, false);
        let y = dequantize_cpu(&q, m, true);
        assert_eq!(&y[..32], &[0.0; 32]);
        assert_eq!(y[40], -3.0);
        assert!((y[41] - 3.0 * 7.0 / 8.0).abs() < 1e-6, "positive extreme clamps to 7 levels: {}", y[41]);
        let q = quantize_q8(&x, m);
        let y = dequantize_cpu(&q, m, false);
        // The scale is stored in f16 (3/127 rounds by ~6e-5 relative).
        assert!((y[40] + 3.0).abs() < 1e-3 && (y[41] - 3.0).abs() < 1e-3, "{} {}", y[40], y[41]);
        assert_eq!(&y[..32], &[0.0; 32]);
    }
}
