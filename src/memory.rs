//! The largest GPU buffers a generation needs, computed from the configs (no run needed): what
//! decides whether a model fits WebGPU's default 128 MiB storage-binding limit.

use crate::error::Result;
use crate::model::attention::DEFAULT_SCORE_BUDGET;
use crate::model::clip::{ClipConfig, EMBEDDING_CHUNK_BYTES};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::vae::decode_tile_size;

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
/// inputs (2 with classifier-free guidance), at `bytes_per` bytes per value (4 f32, 2 f16), as
/// the code splits them: GEGLU in token chunks, attention scores in query chunks, the VAE decode
/// in latent tiles within [`MAX_BUFFER_BYTES`], the CLIP token embedding in row chunks.
pub fn largest_buffers(unet: &UNetConfig, vae: &VaeConfig, clip: &ClipConfig, size: usize, batch: u64, bytes_per: u64) -> Result<Vec<Buffer>> {
    let latent = (size / 8) as u64;
    let heads = unet.heads()?;
    let mut out = Vec::new();
    let levels = unet.block_out_channels.len();
    for (i, &c) in unet.block_out_channels.iter().enumerate() {
        let s = latent >> i;
        let c = c as u64;
        let tokens = s * s;
        // Attention runs at a level when its down or up block has it, or the mid block (the last
        // level); SDXL's first level has none, so its 128² tokens never meet an attention buffer.
        let cross = |t: Option<&String>| t.is_some_and(|t| t.starts_with("CrossAttn"));
        let mid = i + 1 == levels && unet.mid_block_type.as_deref().is_none_or(|m| m == "UNetMidBlock2DCrossAttn");
        if !(cross(unet.down_block_types.get(i)) || cross(unet.up_block_types.get(levels - 1 - i)) || mid) {
            out.push(buf(format!("UNet level {i}: skip concat [{batch}, {}, {s}, {s}]", 3 * c), batch * 3 * c * s * s, bytes_per));
            continue;
        }
        // FeedForward::forward_within: token chunks of at most DEFAULT_SCORE_BUDGET (counted in f32).
        let rows = (DEFAULT_SCORE_BUDGET as u64 / (batch * 8 * c * 4)).clamp(1, tokens);
        out.push(buf(format!("UNet level {i}: GEGLU projection [{batch}, {rows}, {}] (token chunk of {tokens})", 8 * c), batch * rows * 8 * c, bytes_per));
        // Up blocks concatenate the skip: up to 2C (+C at the level boundary) channels.
        out.push(buf(format!("UNet level {i}: skip concat [{batch}, {}, {s}, {s}]", 3 * c), batch * 3 * c * s * s, bytes_per));
        let full_scores = batch * heads[i] as u64 * tokens * tokens * 4;
        out.push(Buffer { what: format!("UNet level {i}: attention scores (f32, chunked from {} MiB)", full_scores >> 20), bytes: full_scores.min(DEFAULT_SCORE_BUDGET as u64) });
    }
    // VAE decoder, one image (one tile when the whole would not fit): each up block's upsampler
    // runs at the next resolution with the block's channels.
    let n = vae.block_out_channels.len();
    let tile = decode_tile_size(&vae.block_out_channels, latent as usize, latent as usize, MAX_BUFFER_BYTES);
    let tiled = tile.map(|t| format!(", {t}-latent tiles")).unwrap_or_default();
    let latent = tile.map(|t| t as u64).unwrap_or(latent);
    let mut s = latent;
    for i in 0..n {
        let c = vae.block_out_channels[n - 1 - i] as u64;
        if i < n - 1 {
            s *= 2;
        }
        out.push(buf(format!("VAE decoder block {i}: [1, {c}, {s}, {s}] (f32{tiled})"), c * s * s, 4));
    }
    out.push(buf(format!("VAE mid attention scores [1, 1, {0}, {0}] (f32)", latent * latent), latent.pow(4), 4));
    let rows = (EMBEDDING_CHUNK_BYTES / (4 * clip.hidden_size)).min(clip.vocab_size);
    out.push(buf(format!("CLIP token embedding chunk [{rows}, {}] (of {} rows)", clip.hidden_size, clip.vocab_size), (rows * clip.hidden_size) as u64, bytes_per));
    let boc = &unet.block_out_channels;
    let c = *boc.iter().max().unwrap() as u64;
    out.push(buf(format!("UNet largest weight (ff.net.0.proj [{}, {c}])", 8 * c), 8 * c * c, bytes_per));
    out.sort_by_key(|b| std::cmp::Reverse(b.bytes));
    Ok(out)
}

/// Whether a `width`×`height` generation with `batch` UNet inputs fits a GPU whose largest buffer
/// (storage binding) is `limit` bytes; the error names the buffer that does not fit and what to
/// do, before anything runs. Bounded by the square of the longer side.
#[allow(clippy::too_many_arguments)]
pub fn check_fits(unet: &UNetConfig, vae: &VaeConfig, clip: &ClipConfig, width: usize, height: usize, batch: u64, bytes_per: u64, limit: u64) -> Result<()> {
    let side = width.max(height);
    let buffers = largest_buffers(unet, vae, clip, side, batch, bytes_per)?;
    match buffers.iter().find(|b| b.bytes > limit) {
        None => Ok(()),
        Some(b) => Err(crate::Error::InvalidRequest(format!(
            "{width}×{height} with batch {batch} is too large for this GPU: it allows buffers of up to {} MiB, and {} would take {} MiB. Choose a smaller size or batch.",
            limit >> 20,
            b.what,
            b.bytes.div_ceil(1 << 20)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SD 1.5 fits WebGPU's default limit up to 1024² with CFG; at 2048² the check refuses and
    /// says which buffer and what to do.
    #[test]
    fn check_fits_names_the_buffer_that_does_not_fit() {
        let (u, v, c) = (UNetConfig::sd15(), VaeConfig::sd(), ClipConfig::sd1());
        check_fits(&u, &v, &c, 512, 512, 2, 4, MAX_BUFFER_BYTES).unwrap();
        check_fits(&u, &v, &c, 768, 512, 2, 4, MAX_BUFFER_BYTES).unwrap();
        let e = check_fits(&u, &v, &c, 2048, 2048, 2, 4, MAX_BUFFER_BYTES).unwrap_err().to_string();
        assert!(e.starts_with("2048×2048 with batch 2 is too large for this GPU: it allows buffers of up to 128 MiB, and UNet level 0: skip concat"), "{e}");
        assert!(e.ends_with("Choose a smaller size or batch."), "{e}");
        // A GPU with larger bindings takes it.
        check_fits(&u, &v, &c, 2048, 2048, 2, 4, 1 << 30).unwrap();
    }

    /// SD 1.5 at 512² in f32: the known shapes, and every buffer within WebGPU's 128 MiB.
    /// SDXL at 1024² with CFG fits WebGPU's default limit; its first level (no attention) has no
    /// attention or GEGLU buffer, its bigG token embedding is chunked like SD's.
    #[test]
    fn sdxl_at_1024_fits_and_its_first_level_has_no_attention() {
        let (u, v, c) = (UNetConfig::sdxl(), VaeConfig::sdxl(), ClipConfig::sdxl().1);
        let b = largest_buffers(&u, &v, &c, 1024, 2, 2).unwrap();
        assert!(b.iter().all(|b| b.bytes <= MAX_BUFFER_BYTES), "{b:?}");
        assert!(b.iter().any(|b| b.what.starts_with("UNet level 0: skip concat")));
        assert!(!b.iter().any(|b| b.what.starts_with("UNet level 0: attention") || b.what.starts_with("UNet level 0: GEGLU")), "{b:?}");
        assert!(b.iter().any(|b| b.what.starts_with("UNet level 2: attention")));
        check_fits(&u, &v, &c, 1024, 1024, 2, 2, MAX_BUFFER_BYTES).unwrap();
    }

    #[test]
    fn sd15_at_512() {
        let b = largest_buffers(&UNetConfig::sd15(), &VaeConfig::sd(), &ClipConfig::sd1(), 512, 2, 4).unwrap();
        let find = |s: &str| b.iter().find(|x| x.what.starts_with(s)).unwrap().bytes;
        // 64 MiB / (2 × 2560 × 4 B) = 3276 of the 4096 tokens per GEGLU chunk.
        assert_eq!(find("UNet level 0: GEGLU"), 2 * 3276 * 2560 * 4);
        // Whole, block 2 would be [1, 256, 512, 512] (256 MiB): 44-latent tiles → [1, 256, 352, 352].
        assert_eq!(find("VAE decoder block 2"), 256 * 352 * 352 * 4);
        // 64 MiB / (768 × 4 B) = 21845 rows per chunk.
        assert_eq!(find("CLIP token embedding chunk"), 21845 * 768 * 4);
        assert!(b.iter().filter(|x| x.what.contains("scores (f32, chunked")).all(|x| x.bytes <= DEFAULT_SCORE_BUDGET as u64));
        for x in &b {
            assert!(x.bytes <= MAX_BUFFER_BYTES, "{}: {} MiB", x.what, x.bytes >> 20);
        }
    }

    /// Small images need no tiling: the VAE decodes whole.
    #[test]
    fn sd15_at_256_decodes_whole() {
        let b = largest_buffers(&UNetConfig::sd15(), &VaeConfig::sd(), &ClipConfig::sd1(), 256, 2, 4).unwrap();
        let block2 = b.iter().find(|x| x.what.starts_with("VAE decoder block 2")).unwrap();
        assert_eq!(block2.bytes, 256 * 256 * 256 * 4);
        assert!(!block2.what.contains("tiles"));
    }
}
