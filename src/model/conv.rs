//! The model's convolutions. On the GPU a 3×3 conv (stride 1, padding 1) runs as our own
//! implicit-GEMM kernel (`kernels::conv3x3`): burn's conv on WGSL (the only conv it has without
//! cooperative-matrix instructions) is a direct kernel that stages nothing in workgroup memory.
//! On the CPU (flex) and, for now, in the browser (`OWN_CONV_IN_BROWSER`) burn's conv stays. `websd bench --ops` times the three side by side: burn's
//! conv, nine matmuls (the route before ours) and our kernel (docs/PERFORMANCE.md).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::ops::PadMode;

use crate::kernels;

/// Below this many output pixels (batch × height × width) burn's conv is faster than ours: at
/// 2² × batch 2 (8 pixels, 1280 channels) ours took 4.5× as long on lavapipe, at 4² × 2 (32) they
/// were even, from 8² × 2 (128) up ours was 2–3.4× faster (docs/PERFORMANCE.md). Our tiles are 64
/// pixels wide and such deep, small convs leave most of them empty.
const MIN_PIXELS_FOR_OWN_CONV: usize = 32;

/// Whether the browser build takes our conv. Not yet: on SwiftShader (the only WebGPU these
/// machines have) the page's generations ran 10–17% slower with it and the TAEF2 round trip at 256²
/// 24% slower (253 vs 204 s); no GPU browser has measured it. The browser test checks it through Chromium's WGSL
/// compiler all the same (`kernels::check`), and bench.html's ops rows time it on the user's GPU.
const OWN_CONV_IN_BROWSER: bool = false;

/// `conv.forward(x)`, through our kernel where it applies.
pub fn forward(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    // With a 3×3 kernel and stride 1, `Same` is one pixel on every side.
    let padded_by_one = matches!(conv.padding, PaddingConfig2d::Explicit(1, 1, 1, 1) | PaddingConfig2d::Same);
    let plain_3x3 = conv.kernel_size == [3, 3] && conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1 && padded_by_one;
    let [batch, _, height, width] = x.dims();
    let big_enough = batch * height * width >= MIN_PIXELS_FOR_OWN_CONV;
    if plain_3x3 && big_enough && (OWN_CONV_IN_BROWSER || cfg!(not(target_arch = "wasm32"))) && kernels::use_own(&x.device()) {
        kernels::conv3x3(x, conv.weight.val(), conv.bias.as_ref().map(|b| b.val()))
    } else {
        conv.forward(x)
    }
}

/// A 3×3 conv (padding 1, stride 1) as nine matmuls: `w[:, :, dy, dx] · x` shifted by `(dy, dx)`,
/// summed, plus the bias. No im2col buffer: each shifted view is the size of the input.
pub fn conv3x3_as_matmuls(x: Tensor<4>, w: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
    let [batch, channels, height, width] = x.dims();
    let out_channels = w.dims()[0];
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let mut sum: Option<Tensor<3>> = None;
    for dy in 0..3 {
        for dx in 0..3 {
            let tap: Tensor<2> = w.clone().slice([0..out_channels, 0..channels, dy..dy + 1, dx..dx + 1]).reshape([out_channels, channels]);
            let shifted: Tensor<3> = padded.clone().slice([0..batch, 0..channels, dy..dy + height, dx..dx + width]).reshape([batch, channels, height * width]);
            let term = tap.unsqueeze::<3>().matmul(shifted);
            sum = Some(match sum {
                Some(s) => s + term,
                None => term,
            });
        }
    }
    let out = sum.expect("nine taps").reshape([batch, out_channels, height, width]);
    match bias {
        Some(b) => out + b.reshape([1, out_channels, 1, 1]),
        None => out,
    }
}
