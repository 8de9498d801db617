//! diffusers' ResnetBlock2D, Downsample2D and Upsample2D (shared by the UNet and the VAE).

use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::prelude::*;

use burn::tensor::activation::silu;

use crate::error::Result;
use crate::kernels;
use crate::model::{conv, linear};
use crate::weights::WeightLoader;

/// GroupNorm computed in f32 whatever the model dtype (f16 sums of squares overflow).
pub fn group_norm_f32(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm(norm, x, false)
}

/// `silu(group_norm_f32(norm, x))`, as one kernel of ours on the GPU.
pub fn group_norm_silu(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    group_norm(norm, x, true)
}

/// On the GPU our kernel (`kernels::group_norm`: statistics in f32, one pass to normalise, scale
/// and activate); on the CPU burn's GroupNorm ([`group_norm_burn`]).
fn group_norm(norm: &GroupNorm, x: Tensor<4>, with_silu: bool) -> Tensor<4> {
    if let (Some(gamma), Some(beta), true) = (&norm.gamma, &norm.beta, kernels::use_own(&x.device())) {
        let dtype: burn::tensor::FloatDType = x.dtype().into();
        return kernels::group_norm(x, gamma.val().cast(dtype), beta.val().cast(dtype), norm.num_groups, norm.epsilon, with_silu);
    }
    let y = group_norm_burn(norm, x);
    if with_silu { silu(y) } else { y }
}

/// burn's GroupNorm, widened to f32 for an f16 model: the route on the CPU, and the stock op
/// that `websd bench --ops` times ours against.
pub fn group_norm_burn(norm: &GroupNorm, x: Tensor<4>) -> Tensor<4> {
    let dtype = x.dtype();
    if dtype == burn::tensor::DType::F32 {
        norm.forward(x)
    } else {
        let mut wide = norm.clone();
        wide.gamma = wide.gamma.map(|g| g.map(|t| t.cast(burn::tensor::FloatDType::F32)));
        wide.beta = wide.beta.map(|b| b.map(|t| t.cast(burn::tensor::FloatDType::F32)));
        wide.forward(x.cast(burn::tensor::FloatDType::F32)).cast(dtype)
    }
}

#[derive(Module, Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

/// What a ResnetBlock2D is built from.
pub struct ResnetSpec {
    pub in_channels: usize,
    pub out_channels: usize,
    /// Channels of the time embedding (None in the VAE).
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub output_scale_factor: f64,
}

impl ResnetBlock2D {
    pub fn load(w: &mut WeightLoader, prefix: &str, s: &ResnetSpec) -> Result<Self> {
        let (cin, cout) = (s.in_channels, s.out_channels);
        Ok(Self {
            norm1: w.group_norm(&format!("{prefix}.norm1"), s.groups, cin, s.eps)?,
            conv1: w.conv2d(&format!("{prefix}.conv1"), cin, cout, 3, 1, 1, true)?,
            time_emb_proj: match s.temb_channels {
                Some(t) => Some(w.linear(&format!("{prefix}.time_emb_proj"), t, cout, true)?),
                None => None,
            },
            norm2: w.group_norm(&format!("{prefix}.norm2"), s.groups, cout, s.eps)?,
            conv2: w.conv2d(&format!("{prefix}.conv2"), cout, cout, 3, 1, 1, true)?,
            conv_shortcut: if cin != cout { Some(w.conv2d(&format!("{prefix}.conv_shortcut"), cin, cout, 1, 1, 0, true)?) } else { None },
            output_scale_factor: s.output_scale_factor,
        })
    }

    pub fn forward(&self, x: Tensor<4>, temb: Option<&Tensor<2>>) -> Tensor<4> {
        let mut h = conv::forward(&self.conv1, group_norm_silu(&self.norm1, x.clone()));
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            let t = linear::forward(proj, silu(temb.clone()));
            h = h + t.unsqueeze_dim::<3>(2).unsqueeze_dim::<4>(3);
        }
        let h = conv::forward(&self.conv2, group_norm_silu(&self.norm2, h));
        let shortcut = match &self.conv_shortcut {
            Some(c) => conv::forward(c, x),
            None => x,
        };
        let out = shortcut + h;
        if self.output_scale_factor == 1.0 { out } else { out / self.output_scale_factor }
    }
}

/// Downsample2D with a conv of stride 2. `padding` 0 means diffusers' asymmetric pad (right and
/// bottom by one) before the conv, as the VAE encoder does.
#[derive(Module, Debug)]
pub struct Downsample2D {
    conv: Conv2d,
    pad_right_bottom: bool,
}

impl Downsample2D {
    pub fn load(w: &mut WeightLoader, prefix: &str, channels: usize, padding: usize) -> Result<Self> {
        Ok(Self { conv: w.conv2d(&format!("{prefix}.conv"), channels, channels, 3, 2, padding, true)?, pad_right_bottom: padding == 0 })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = if self.pad_right_bottom { x.pad((0, 1, 0, 1), burn::tensor::ops::PadMode::Constant(0.0)) } else { x };
        conv::forward(&self.conv, x)
    }
}

/// Nearest-neighbour 2× upsampling (exact: every pixel repeated 2×2), then a 3×3 conv.
#[derive(Module, Debug)]
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    pub fn load(w: &mut WeightLoader, prefix: &str, channels: usize) -> Result<Self> {
        Ok(Self { conv: w.conv2d(&format!("{prefix}.conv"), channels, channels, 3, 1, 1, true)? })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv::forward(&self.conv, upsample_nearest_2x(x))
    }

    /// Upsamples to `[h, w]` (2× or 2×−1 per side, when the matching down level had an odd size):
    /// repeat-then-crop equals torch's nearest interpolation for those sizes.
    pub fn forward_to(&self, x: Tensor<4>, [h, w]: [usize; 2]) -> Tensor<4> {
        let up = upsample_nearest_2x(x);
        let [b, c, uh, uw] = up.dims();
        let up = if (uh, uw) == (h, w) { up } else { up.slice([0..b, 0..c, 0..h, 0..w]) };
        conv::forward(&self.conv, up)
    }
}

pub fn upsample_nearest_2x(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    x.reshape([b, c, h, 1, w, 1]).expand([b, c, h, 2, w, 2]).reshape([b, c, 2 * h, 2 * w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, FloatDType};

    /// Activations of a few hundred (as SD's deep blocks reach) square past f16's 65504: the
    /// norm must still give the f32 result when the model runs in f16.
    #[test]
    fn group_norm_in_f16_does_not_overflow() {
        let device = Device::flex();
        let x = Tensor::<4>::random([1, 64, 16, 16], Distribution::Normal(0.0, 1.0), &device) * 300.0 + 100.0;
        let norm = burn::nn::GroupNormConfig::new(32, 64).init(&device);
        let mut half = norm.clone();
        half.gamma = half.gamma.map(|g| g.map(|t| t.cast(FloatDType::F16)));
        half.beta = half.beta.map(|b| b.map(|t| t.cast(FloatDType::F16)));
        let want = group_norm_f32(&norm, x.clone());
        let got = group_norm_f32(&half, x.cast(FloatDType::F16));
        assert_eq!(got.dtype(), burn::tensor::DType::F16);
        let err: f32 = (got.cast(FloatDType::F32) - want).abs().max().into_scalar();
        assert!(err < 1e-2, "f16 group norm differs from f32 by {err}");
    }
}
