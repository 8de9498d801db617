//! An autoencoder's round trip of a photo: encode → decode, scored by PSNR against the input, beside
//! the decode of random latents of the same mean and spread. With real weights this is the check that
//! a checkpoint loads and computes what it was trained to (a wrong layer order, a missing branch or
//! a skipped clamp falls far below the figure), and random latents show what failure looks like.

use burn::prelude::*;

use crate::error::Result;
use crate::image::{RgbaImage, centre_square_resized, psnr_db};
use crate::model::taesd::Taesd;
use crate::pipeline::generate::{read_images, rgba_to_tensor};

/// The bound a correct GPU meets with TAEF2 on the astronaut photo (www/models/taef2), per size:
/// the f32 CPU figures are 26.10, 29.39 and 31.18 dB (`websd roundtrip www/models/taef2 --image
/// www/models/taef2/astronaut.png --size N --device flex`), and random latents give ~9.6 dB.
/// bench.html's check and the tests read it from here; other sizes have no bound.
pub fn taef2_passing_psnr_db(size: usize) -> Option<f64> {
    match size {
        128 => Some(25.5),
        256 => Some(29.0),
        512 => Some(30.5),
        _ => None,
    }
}

pub struct RoundTrip {
    /// The photo's centre square at the size used.
    pub input: RgbaImage,
    pub round_trip: RgbaImage,
    /// Random latents with the encoded latents' mean and standard deviation, decoded.
    pub random: RgbaImage,
    pub psnr_db: f64,
    pub random_psnr_db: f64,
    pub latent_shape: [usize; 4],
    pub latent_mean: f64,
    pub latent_std: f64,
}

/// Round trip of `photo`'s centre square scaled to `size`² through `taesd`; `seed` draws the
/// random latents (websd's own noise, the same on every platform).
pub async fn taesd_round_trip(taesd: &Taesd, photo: &RgbaImage, size: usize, seed: u64, device: &Device) -> Result<RoundTrip> {
    let input = centre_square_resized(photo, size)?;
    let latents = taesd.encode(rgba_to_tensor(&input, device));
    let latent_shape = latents.dims();
    let decoded = taesd.decode(latents.clone());
    let round_trip = read_images(decoded, size, size).await?.remove(0);

    let values: Vec<f32> =
        latents.into_data_async().await.map_err(|e| crate::Error::readback("the latents", e))?.convert::<f32>().try_to_vec().map_err(|e| crate::Error::Other(format!("{e:?}")))?;
    let n = values.len() as f64;
    let latent_mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
    let latent_std = (values.iter().map(|&v| (v as f64 - latent_mean).powi(2)).sum::<f64>() / n).sqrt();
    let [_, c, h, w] = latent_shape;
    let noise = crate::rng::batch_noise(seed, 0, 1, [c, h, w], device);
    let random = read_images(taesd.decode(noise * latent_std + latent_mean), size, size).await?.remove(0);

    Ok(RoundTrip { psnr_db: psnr_db(&input, &round_trip), random_psnr_db: psnr_db(&input, &random), input, round_trip, random, latent_shape, latent_mean, latent_std })
}
