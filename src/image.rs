//! Decoded images: VAE output → RGBA bytes, the checks that keep a broken generation from being
//! shown as a black square, and PNG files that carry their generation parameters.

use burn::prelude::*;

use crate::error::{Error, Result};

/// One RGBA8 image.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbaImage {
    pub width: usize,
    pub height: usize,
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
                return Err(Error::BadImage(format!(
                    "image {} of the batch contains NaN/infinite values (the model overflowed; try f32 or other settings)",
                    b + 1
                )));
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
        encoder
            .add_itxt_chunk("parameters".to_string(), parameters.to_string())
            .map_err(|e| Error::Other(format!("PNG text chunk: {e}")))?;
        let mut writer = encoder.write_header().map_err(|e| Error::Other(format!("PNG header: {e}")))?;
        writer.write_image_data(&image.pixels).map_err(|e| Error::Other(format!("PNG data: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_range_and_rejects_bad_images() {
        let device = Device::flex();
        // Two 1×2 images: -1 → 0, 1 → 255, 0 → 127.5 (rounds to 128).
        let decoded = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(vec![-1.0f32, 1.0, 0.0, 0.0, 1.0, -1.0, -2.0, 2.0, 0.5, 0.5, -0.5, -0.5], [2, 3, 1, 2]),
            &device,
        );
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
}
