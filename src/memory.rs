//! The largest GPU buffers a generation needs, computed from the configs (no run needed): what
//! decides whether a model fits WebGPU's default 128 MiB storage-binding limit.

use crate::error::Result;
use crate::model::clip::ClipConfig;
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::attention::DEFAULT_SCORE_BUDGET;

/// WebGPU's default `maxStorageBufferBindingSize`: no single buffer may exceed it.
pub const MAX_BUFFER_BYTES: u64 = 128 << 20;

/// One named buffer and its size in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    pub what: String,
    pub bytes: u64,
}

fn buf(what: String, elements: u64, bytes_per: u64) -> Buffer {
    Buffer { what, bytes: elements * bytes_per }
}

/// The largest activations and weights of one txt2img run at `size`² pixels with `batch` UNet
/// inputs (2 with classifier-free guidance), at `bytes_per` bytes per value (4 f32, 2 f16).
pub fn largest_buffers(unet: &UNetConfig, vae: &VaeConfig, clip: &ClipConfig, size: usize, batch: u64, bytes_per: u64) -> Result<Vec<Buffer>> {
    let latent = (size / 8) as u64;
    let heads = unet.heads()?;
    let mut out = Vec::new();
    for (i, &c) in unet.block_out_channels.iter().enumerate() {
        let s = latent >> i;
        let c = c as u64;
        let tokens = s * s;
        out.push(buf(format!("UNet level {i}: GEGLU projection [{batch}, {tokens}, {}]", 8 * c), batch * tokens * 8 * c, bytes_per));
        // Up blocks concatenate the skip: up to 2C (+C at the level boundary) channels.
        out.push(buf(format!("UNet level {i}: skip concat [{batch}, {}, {s}, {s}]", 3 * c), batch * 3 * c * s * s, bytes_per));
        let full_scores = batch * heads[i] as u64 * tokens * tokens * 4;
        out.push(Buffer {
            what: format!("UNet level {i}: attention scores (f32, chunked from {} MiB)", full_scores >> 20),
            bytes: full_scores.min(DEFAULT_SCORE_BUDGET as u64),
        });
    }
    // VAE decoder, one image: each up block's upsampler runs at the next resolution with the
    // block's channels.
    let n = vae.block_out_channels.len();
    let mut s = latent;
    for i in 0..n {
        let c = vae.block_out_channels[n - 1 - i] as u64;
        if i < n - 1 {
            s *= 2;
        }
        out.push(buf(format!("VAE decoder block {i}: [1, {c}, {s}, {s}] (f32)"), c * s * s, 4));
    }
    out.push(buf(format!("VAE mid attention scores [1, 1, {0}, {0}] (f32)", latent * latent), latent.pow(4), 4));
    out.push(buf(
        format!("CLIP token embedding [{}, {}]", clip.vocab_size, clip.hidden_size),
        (clip.vocab_size * clip.hidden_size) as u64,
        bytes_per,
    ));
    let boc = &unet.block_out_channels;
    let c = *boc.iter().max().unwrap() as u64;
    out.push(buf(format!("UNet largest weight (ff.net.0.proj [{}, {c}])", 8 * c), 8 * c * c, bytes_per));
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SD 1.5 at 512²: the known shapes, and the attention scores stay within the budget.
    #[test]
    fn sd15_at_512() {
        let b = largest_buffers(&UNetConfig::sd15(), &VaeConfig::sd(), &ClipConfig::sd1(), 512, 2, 4).unwrap();
        let find = |s: &str| b.iter().find(|x| x.what.starts_with(s)).unwrap().bytes;
        assert_eq!(find("UNet level 0: GEGLU"), 2 * 4096 * 2560 * 4);
        assert_eq!(find("VAE decoder block 2"), 256 * 512 * 512 * 4);
        assert_eq!(find("CLIP token embedding"), 49408 * 768 * 4);
        assert!(b.iter().filter(|x| x.what.contains("scores (f32, chunked")).all(|x| x.bytes <= DEFAULT_SCORE_BUDGET as u64));
    }
}
