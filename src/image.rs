//! Decoded images: VAE output → RGBA bytes, the checks that keep a broken generation from being
//! shown as a black square, and PNG files that carry their generation parameters.

use burn::prelude::*;

use crate::error::{Error, Result};

/// One RGBA8 image.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
    #[serde(with = "serde_bytes")]
    pub pixels: Vec<u8>,
}

/// Maps a decoded batch `[B, 3, H, W]` in [-1, 1] to `[B, H, W, 3]` values in [0, 255] on the
/// device (so only bytes' worth of floats come back).
pub fn to_rgb_255(decoded: Tensor<4>) -> Tensor<4> {
    ((decoded + 1.0) * 127.5).clamp(0.0, 255.0).permute([0, 2, 3, 1])
}

/// Splits `[B, H, W, 3]` values in [0, 255] (row-major, as read back from the device) into images.
/// Fails when any value is NaN or an image is one flat colour: a failed generation is an error with
/// a reason, never a black square.
pub fn rgb_values_to_images(values: &[f32], batch: usize, height: usize, width: usize) -> Result<Vec<RgbaImage>> {
    let per_image = height * width * 3;
    if values.len() != batch * per_image {
        return Err(Error::Other(format!("decoded {} values, expected {batch}×{height}×{width}×3", values.len())));
    }
    values
        .chunks(per_image)
        .enumerate()
        .map(|(b, rgb)| {
            if rgb.iter().any(|v| !v.is_finite()) {
                return Err(Error::BadImage(format!("image {} of the batch contains NaN/infinite values (the model overflowed; try f32 or other settings)", b + 1)));
            }
            let (lo, hi) = rgb.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if hi - lo < 1.0 {
                return Err(Error::BadImage(format!("image {} of the batch is a single flat colour ({lo:.0})", b + 1)));
            }
            let mut pixels = Vec::with_capacity(height * width * 4);
            for px in rgb.chunks(3) {
                pixels.extend(px.iter().map(|v| v.round() as u8));
                pixels.push(255);
            }
            Ok(RgbaImage { width, height, pixels })
        })
        .collect()
}

/// Encodes an image as PNG with a `parameters` text chunk, as A1111 writes it, so that the settings
/// travel with the file.
pub fn encode_png(image: &RgbaImage, parameters: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width as u32, image.height as u32);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.add_itxt_chunk("parameters".to_string(), parameters.to_string()).map_err(|e| Error::Other(format!("PNG text chunk: {e}")))?;
        let mut writer = encoder.write_header().map_err(|e| Error::Other(format!("PNG header: {e}")))?;
        writer.write_image_data(&image.pixels).map_err(|e| Error::Other(format!("PNG data: {e}")))?;
    }
    Ok(out)
}

/// The largest side of a PNG websd reads (an 8K photo fits; SD itself draws at most 2048).
pub const MAX_PNG_SIDE: u32 = 8192;

/// Decodes a PNG file into RGBA8 (RGB, grey and palette images get an opaque alpha).
pub fn decode_png(what: &str, bytes: &[u8]) -> Result<RgbaImage> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidInput(format!("{what}: not a PNG image websd can read ({e})"));
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8() | png::Transformations::ALPHA);
    let mut reader = decoder.read_info().map_err(|e| bad(&e))?;
    // The header's size is checked before the pixel buffer is allocated: a 100 000² header would
    // otherwise ask for 40 GB and abort the process (the tab, in the browser).
    let (width, height) = (reader.info().width, reader.info().height);
    if width > MAX_PNG_SIDE || height > MAX_PNG_SIDE {
        return Err(Error::InvalidInput(format!("{what}: the PNG is {width}×{height} pixels; websd reads PNGs up to {MAX_PNG_SIDE}×{MAX_PNG_SIDE}")));
    }
    let mut buf = vec![0; reader.output_buffer_size().ok_or_else(|| bad(&"too large"))?];
    let info = reader.next_frame(&mut buf).map_err(|e| bad(&e))?;
    buf.truncate(info.buffer_size());
    let pixels = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::GrayscaleAlpha => buf.chunks(2).flat_map(|p| [p[0], p[0], p[0], p[1]]).collect(),
        other => return Err(bad(&format!("colour type {other:?}"))),
    };
    Ok(RgbaImage { width: info.width as usize, height: info.height as usize, pixels })
}

/// The centred square of `image`, resized to `size`×`size` with `resize_bicubic`.
pub fn centre_square_resized(image: &RgbaImage, size: usize) -> Result<RgbaImage> {
    let side = image.width.min(image.height);
    if size == 0 || side == 0 {
        return Err(Error::InvalidInput(format!("a {}×{} image cannot be resized to {size}×{size}", image.width, image.height)));
    }
    let (x0, y0) = ((image.width - side) / 2, (image.height - side) / 2);
    let mut pixels = Vec::with_capacity(side * side * 4);
    for y in y0..y0 + side {
        pixels.extend_from_slice(&image.pixels[(y * image.width + x0) * 4..(y * image.width + x0 + side) * 4]);
    }
    Ok(resize_bicubic(&RgbaImage { width: side, height: side, pixels }, size, size))
}

/// Resizes with the bicubic filter (a = −0.5) widened by the scale when shrinking, so that every
/// input pixel counts (antialiased, as Pillow's `Image.resize(…, BICUBIC)` does: the figures the
/// reference measured were made that way). Separable: rows first, then columns, bytes in between.
pub fn resize_bicubic(image: &RgbaImage, width: usize, height: usize) -> RgbaImage {
    let rows = resample_axis(&image.pixels, image.width, image.height, width, true);
    let pixels = resample_axis(&rows, width, image.height, height, false);
    RgbaImage { width, height, pixels }
}

/// One pass of `resize_bicubic` along x (`along_x`) or y, from `from` samples to `to`.
fn resample_axis(pixels: &[u8], width: usize, height: usize, to: usize, along_x: bool) -> Vec<u8> {
    let from = if along_x { width } else { height };
    let taps = bicubic_taps(from, to);
    let (out_w, out_h) = if along_x { (to, height) } else { (width, to) };
    let mut out = vec![0u8; out_w * out_h * 4];
    for y in 0..out_h {
        for x in 0..out_w {
            let (first, weights) = &taps[if along_x { x } else { y }];
            let mut sum = [0f64; 4];
            for (i, w) in weights.iter().enumerate() {
                let at = if along_x { (y * width + first + i) * 4 } else { ((first + i) * width + x) * 4 };
                for c in 0..4 {
                    sum[c] += w * pixels[at + c] as f64;
                }
            }
            for c in 0..4 {
                out[(y * out_w + x) * 4 + c] = sum[c].round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output sample: the first input sample it reads and the normalised weights.
fn bicubic_taps(from: usize, to: usize) -> Vec<(usize, Vec<f64>)> {
    fn cubic(x: f64) -> f64 {
        let (a, x) = (-0.5, x.abs());
        if x < 1.0 {
            ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
        } else if x < 2.0 {
            (((x - 5.0) * x + 8.0) * x - 4.0) * a
        } else {
            0.0
        }
    }
    let scale = from as f64 / to as f64;
    let widen = scale.max(1.0);
    let support = 2.0 * widen;
    (0..to)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let first = ((centre - support + 0.5).floor().max(0.0)) as usize;
            let last = ((centre + support + 0.5).floor() as usize).min(from);
            let mut weights: Vec<f64> = (first..last).map(|i| cubic((i as f64 - centre + 0.5) / widen)).collect();
            let total: f64 = weights.iter().sum();
            weights.iter_mut().for_each(|w| *w /= total);
            (first, weights)
        })
        .collect()
}

/// Peak signal-to-noise ratio of `b` against `a` over their RGB bytes, in dB.
pub fn psnr_db(a: &RgbaImage, b: &RgbaImage) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height), "PSNR of images of different sizes");
    let (mut sum, mut n) = (0f64, 0usize);
    for (p, q) in a.pixels.chunks(4).zip(b.pixels.chunks(4)) {
        for c in 0..3 {
            let d = p[c] as f64 - q[c] as f64;
            sum += d * d;
            n += 1;
        }
    }
    let mse = sum / n as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_range_and_rejects_bad_images() {
        let device = Device::flex();
        // Two 1×2 images: -1 → 0, 1 → 255, 0 → 127.5 (rounds to 128).
        let decoded = Tensor::<4>::from_data(burn::tensor::TensorData::new(vec![-1.0f32, 1.0, 0.0, 0.0, 1.0, -1.0, -2.0, 2.0, 0.5, 0.5, -0.5, -0.5], [2, 3, 1, 2]), &device);
        let values: Vec<f32> = to_rgb_255(decoded).into_data().try_to_vec().unwrap();
        let images = rgb_values_to_images(&values, 2, 1, 2).unwrap();
        assert_eq!(images[0].pixels, vec![0, 128, 255, 255, 255, 128, 0, 255]);
        assert_eq!(images[1].pixels, vec![0, 191, 64, 255, 255, 191, 64, 255]);

        let nan = vec![f32::NAN; 6];
        assert!(matches!(rgb_values_to_images(&nan, 1, 1, 2), Err(Error::BadImage(m)) if m.contains("NaN")));
        let flat = vec![0.0; 6];
        assert!(matches!(rgb_values_to_images(&flat, 1, 1, 2), Err(Error::BadImage(m)) if m.contains("flat")));
    }

    #[test]
    fn png_round_trips_pixels_and_parameters() {
        let image = RgbaImage { width: 2, height: 1, pixels: vec![1, 2, 3, 255, 4, 5, 6, 255] };
        let bytes = encode_png(&image, "a cat\nSteps: 20, Seed: 7").unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let text = &reader.info().utf8_text[0];
        assert_eq!(text.keyword, "parameters");
        assert_eq!(text.get_text().unwrap(), "a cat\nSteps: 20, Seed: 7");
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(buf, image.pixels);
    }

    #[test]
    fn resizes_the_centre_square_and_measures_psnr() {
        // 6×4: the centre square is columns 1..5. A flat image stays flat at any size, and a
        // horizontal ramp shrunk 2× keeps its mean and its order.
        let pixels = (0..24).flat_map(|i| [(i % 6) as u8 * 10, 40, 7, 255]).collect();
        let image = RgbaImage { width: 6, height: 4, pixels };
        let small = centre_square_resized(&image, 2).unwrap();
        assert_eq!((small.width, small.height), (2, 2));
        let reds: Vec<u8> = small.pixels.chunks(4).map(|p| p[0]).collect();
        assert!(reds[0] < reds[1] && reds[0] == reds[2] && reds[1] == reds[3], "{reds:?}");
        assert!((reds[0] as i32 + reds[1] as i32 - 50).abs() <= 1, "mean of 10..40 kept: {reds:?}");
        assert!(small.pixels.chunks(4).all(|p| p[1..] == [40, 7, 255]));
        assert_eq!(resize_bicubic(&small, 2, 2), small, "same size is the identity");
        let big = resize_bicubic(&RgbaImage { width: 1, height: 1, pixels: vec![9, 8, 7, 255] }, 3, 5);
        assert!(big.pixels.chunks(4).all(|p| p == [9, 8, 7, 255]));
        assert!(centre_square_resized(&image, 0).is_err());
        assert_eq!(psnr_db(&small, &small), f64::INFINITY);
        let mut off = small.clone();
        off.pixels[0] += 4; // MSE 16/12
        assert!((psnr_db(&small, &off) - 10.0 * (255.0f64 * 255.0 * 12.0 / 16.0).log10()).abs() < 1e-9);
        let png = encode_png(&small, "").unwrap();
        assert_eq!(decode_png("test", &png).unwrap(), small);
        assert!(decode_png("junk", b"not a png").unwrap_err().to_string().contains("junk"));
    }
}
