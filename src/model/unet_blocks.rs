//! The UNet's building blocks: Transformer2DModel / BasicTransformerBlock and the down, mid and
//! up blocks, named and wired as diffusers' unet_2d_blocks.py.

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, Linear};
use burn::prelude::*;

use crate::model::{conv, linear};
use burn::tensor::activation::gelu;

use super::attention::{Attention, DEFAULT_SCORE_BUDGET};
use super::resnet::{Downsample2D, ResnetBlock2D, ResnetSpec, Upsample2D, group_norm_f32};
use crate::error::Result;
use crate::weights::WeightLoader;

/// LayerNorm computed in f32 (burn widens f16 inputs itself).
fn layer_norm(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    norm.forward(x)
}

/// GEGLU feed-forward: `ff.net.0.proj` → hidden * gelu(gate) → `ff.net.2`.
#[derive(Module, Debug)]
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn load(w: &mut WeightLoader, prefix: &str, dim: usize) -> Result<Self> {
        let inner = dim * 4;
        Ok(Self { proj: w.linear(&format!("{prefix}.net.0.proj"), dim, inner * 2, true)?, out: w.linear(&format!("{prefix}.net.2"), inner, dim, true)? })
    }

    /// Tokens are independent, so long sequences go through in chunks: the GEGLU projection is
    /// [B, N, 8·dim] (SD 2.x at 768², batch 2: 180 MiB in f32, over WebGPU's 128 MiB binding limit).
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.forward_within(x, DEFAULT_SCORE_BUDGET)
    }

    /// The forward pass with no projection block over `budget` bytes (counted in f32).
    fn forward_within(&self, x: Tensor<3>, budget: usize) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let bytes_per_token = b * self.proj.weight.dims()[1] * 4;
        let rows = (budget / bytes_per_token.max(1)).clamp(1, n);
        if rows == n {
            return self.forward_tokens(x);
        }
        let chunks = (0..n).step_by(rows).map(|start| self.forward_tokens(x.clone().narrow(1, start, rows.min(n - start))));
        Tensor::cat(chunks.collect(), 1)
    }

    fn forward_tokens(&self, x: Tensor<3>) -> Tensor<3> {
        let mut parts = linear::forward(&self.proj, x).chunk(2, 2);
        let gate = parts.pop().unwrap();
        let hidden = parts.pop().unwrap();
        linear::forward(&self.out, hidden * gelu(gate))
    }
}

#[derive(Module, Debug)]
struct BasicTransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    /// `upcast_attention` (SD 2.x) needs nothing here: our attention always computes the scores
    /// and the softmax in f32, which is what the flag asks for.
    fn load(w: &mut WeightLoader, prefix: &str, dim: usize, heads: usize, context_dim: usize) -> Result<Self> {
        let head_dim = dim / heads;
        Ok(Self {
            norm1: w.layer_norm(&format!("{prefix}.norm1"), dim, 1e-5)?,
            attn1: Attention::load(w, &format!("{prefix}.attn1"), dim, dim, heads, head_dim, false)?,
            norm2: w.layer_norm(&format!("{prefix}.norm2"), dim, 1e-5)?,
            attn2: Attention::load(w, &format!("{prefix}.attn2"), dim, context_dim, heads, head_dim, false)?,
            norm3: w.layer_norm(&format!("{prefix}.norm3"), dim, 1e-5)?,
            ff: FeedForward::load(w, &format!("{prefix}.ff"), dim)?,
        })
    }

    fn forward(&self, x: Tensor<3>, context: &Tensor<3>) -> Tensor<3> {
        let x = self.attn1.forward(layer_norm(&self.norm1, x.clone()), None) + x;
        let x = self.attn2.forward(layer_norm(&self.norm2, x.clone()), Some(context.clone())) + x;
        self.ff.forward(layer_norm(&self.norm3, x.clone())) + x
    }
}

/// proj_in / proj_out are 1×1 convs (SD 1.x) or linears (SD 2.x, `use_linear_projection`).
#[derive(Module, Debug)]
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

/// Transformer2DModel over a feature map: norm → proj_in → blocks → proj_out → + residual.
#[derive(Module, Debug)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
}

/// How the UNet's transformers are configured.
#[derive(Clone, Copy)]
pub struct TransformerSpec {
    pub heads: usize,
    pub layers: usize,
    pub context_dim: usize,
    pub groups: usize,
    pub linear_projection: bool,
}

impl Transformer2D {
    pub fn load(w: &mut WeightLoader, prefix: &str, channels: usize, s: &TransformerSpec) -> Result<Self> {
        let proj = |w: &mut WeightLoader, name: &str| -> Result<Projection> {
            let name = format!("{prefix}.{name}");
            Ok(if s.linear_projection {
                Projection::Linear(w.linear(&name, channels, channels, true)?)
            } else {
                Projection::Conv(w.conv2d(&name, channels, channels, 1, 1, 0, true)?)
            })
        };
        let norm = w.group_norm(&format!("{prefix}.norm"), s.groups, channels, 1e-6)?;
        let proj_in = proj(w, "proj_in")?;
        let blocks =
            (0..s.layers).map(|i| BasicTransformerBlock::load(w, &format!("{prefix}.transformer_blocks.{i}"), channels, s.heads, s.context_dim)).collect::<Result<Vec<_>>>()?;
        let proj_out = proj(w, "proj_out")?;
        Ok(Self { norm, proj_in, blocks, proj_out })
    }

    pub fn forward(&self, x: Tensor<4>, context: &Tensor<3>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let to_seq = |t: Tensor<4>| t.permute([0, 2, 3, 1]).reshape([b, h * w, c]);
        let to_map = |t: Tensor<3>| t.reshape([b, h, w, c]).permute([0, 3, 1, 2]);
        let normed = group_norm_f32(&self.norm, x.clone());
        let mut seq = match &self.proj_in {
            Projection::Conv(c) => to_seq(conv::forward(c, normed)),
            Projection::Linear(l) => linear::forward(l, to_seq(normed)),
        };
        for block in &self.blocks {
            seq = block.forward(seq, context);
        }
        let out = match &self.proj_out {
            Projection::Conv(c) => conv::forward(c, to_map(seq)),
            Projection::Linear(l) => to_map(linear::forward(l, seq)),
        };
        out + x
    }
}

/// CrossAttnDownBlock2D (with transformers) or DownBlock2D (without).
#[derive(Module, Debug)]
pub struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    downsampler: Option<Downsample2D>,
}

/// Channels and options shared by the UNet's resnets.
#[derive(Clone, Copy)]
pub struct BlockSpec {
    pub temb_channels: usize,
    pub groups: usize,
    pub eps: f64,
}

impl BlockSpec {
    fn resnet(&self, cin: usize, cout: usize) -> ResnetSpec {
        ResnetSpec { in_channels: cin, out_channels: cout, temb_channels: Some(self.temb_channels), groups: self.groups, eps: self.eps, output_scale_factor: 1.0 }
    }
}

impl DownBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &mut WeightLoader,
        prefix: &str,
        cin: usize,
        cout: usize,
        layers: usize,
        spec: &BlockSpec,
        transformer: Option<&TransformerSpec>,
        downsample_padding: Option<usize>,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for j in 0..layers {
            let c = if j == 0 { cin } else { cout };
            resnets.push(ResnetBlock2D::load(w, &format!("{prefix}.resnets.{j}"), &spec.resnet(c, cout))?);
            if let Some(t) = transformer {
                attentions.push(Transformer2D::load(w, &format!("{prefix}.attentions.{j}"), cout, t)?);
            }
        }
        let downsampler = match downsample_padding {
            Some(p) => Some(Downsample2D::load(w, &format!("{prefix}.downsamplers.0"), cout, p)?),
            None => None,
        };
        Ok(Self { resnets, attentions, downsampler })
    }

    /// Returns the block's output and the skip connections it contributes.
    pub fn forward(&self, mut x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut skips = Vec::new();
        for (j, resnet) in self.resnets.iter().enumerate() {
            x = resnet.forward(x, Some(temb));
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(x, context);
            }
            skips.push(x.clone());
        }
        if let Some(down) = &self.downsampler {
            x = down.forward(x);
            skips.push(x.clone());
        }
        (x, skips)
    }
}

/// UNetMidBlock2DCrossAttn: resnet, then (transformer, resnet) pairs.
#[derive(Module, Debug)]
pub struct MidBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
}

impl MidBlock {
    pub fn load(w: &mut WeightLoader, prefix: &str, channels: usize, spec: &BlockSpec, scale: f64, t: &TransformerSpec) -> Result<Self> {
        let resnet = |w: &mut WeightLoader, i: usize| {
            let mut s = spec.resnet(channels, channels);
            s.output_scale_factor = scale;
            ResnetBlock2D::load(w, &format!("{prefix}.resnets.{i}"), &s)
        };
        // diffusers' mid block has one transformer (num_layers=1) between two resnets.
        let first = resnet(w, 0)?;
        let attention = Transformer2D::load(w, &format!("{prefix}.attentions.0"), channels, t)?;
        let second = resnet(w, 1)?;
        Ok(Self { resnets: vec![first, second], attentions: vec![attention] })
    }

    pub fn forward(&self, x: Tensor<4>, temb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        let mut x = self.resnets[0].forward(x, Some(temb));
        for (attn, resnet) in self.attentions.iter().zip(&self.resnets[1..]) {
            x = resnet.forward(attn.forward(x, context), Some(temb));
        }
        x
    }
}

/// CrossAttnUpBlock2D or UpBlock2D: each resnet takes the previous output concatenated with a skip.
#[derive(Module, Debug)]
pub struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<Transformer2D>,
    upsampler: Option<Upsample2D>,
}

impl UpBlock {
    /// `skip_channels[j]`: the channels of the skip resnet j consumes.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        w: &mut WeightLoader,
        prefix: &str,
        prev_out: usize,
        cout: usize,
        skip_channels: &[usize],
        spec: &BlockSpec,
        transformer: Option<&TransformerSpec>,
        upsample: bool,
    ) -> Result<Self> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for (j, skip) in skip_channels.iter().enumerate() {
            let c = if j == 0 { prev_out } else { cout };
            resnets.push(ResnetBlock2D::load(w, &format!("{prefix}.resnets.{j}"), &spec.resnet(c + skip, cout))?);
            if let Some(t) = transformer {
                attentions.push(Transformer2D::load(w, &format!("{prefix}.attentions.{j}"), cout, t)?);
            }
        }
        let upsampler = if upsample { Some(Upsample2D::load(w, &format!("{prefix}.upsamplers.0"), cout)?) } else { None };
        Ok(Self { resnets, attentions, upsampler })
    }

    /// Consumes skips from the end of `skips`.
    pub fn forward(&self, mut x: Tensor<4>, skips: &mut Vec<Tensor<4>>, temb: &Tensor<2>, context: &Tensor<3>) -> Tensor<4> {
        for (j, resnet) in self.resnets.iter().enumerate() {
            let skip = skips.pop().expect("a skip connection per up-block resnet");
            x = resnet.forward(Tensor::cat(vec![x, skip], 1), Some(temb));
            if let Some(attn) = self.attentions.get(j) {
                x = attn.forward(x, context);
            }
        }
        match (&self.upsampler, skips.last()) {
            // Upsample to the size of the skip the next block consumes.
            (Some(up), Some(next)) => {
                let [_, _, h, w] = next.dims();
                up.forward_to(x, [h, w])
            }
            (Some(up), None) => up.forward(x),
            (None, _) => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::RandomSource;

    #[test]
    fn chunked_feed_forward_equals_whole() {
        let device = Device::flex();
        let mut source = RandomSource::new();
        let ff = FeedForward::load(&mut WeightLoader::new(&mut source, &device), "ff", 8).unwrap();
        let x = Tensor::<3>::random([2, 37, 8], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
        let whole = ff.forward_within(x.clone(), usize::MAX);
        // 2 batch × 64 projected features × 4 bytes × 5 tokens: chunks of 5 tokens, the last of 2.
        let chunked = ff.forward_within(x, 2 * 64 * 4 * 5);
        let diff: f32 = (whole - chunked).abs().max().into_scalar();
        assert!(diff < 1e-6, "chunked feed-forward differs by {diff}");
    }
}
