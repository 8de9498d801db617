//! A 3×3 convolution (stride 1, padding 1) as an implicit GEMM: output channels × pixels, summed
//! over input channels × the nine taps, with tiles of both operands staged in workgroup memory.
//! The im2col matrix is never written: each tile of it is gathered from the image as it is loaded.
//! burn's own 3×3 conv on WGSL is a direct kernel that reads every operand from global memory
//! (docs/KERNELS.md Q1b).

use burn::tensor::Shape;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Invocations per workgroup along each side: 16 × 16 = 256, WebGPU's default limit.
pub(crate) const THREADS_SIDE: usize = 16;
pub(crate) const THREADS: usize = THREADS_SIDE * THREADS_SIDE;
/// How much of the summed dimension (input channels × 9 taps) a workgroup stages at a time.
pub(crate) const DEPTH: usize = 16;

/// How a workgroup's tile is cut. Each invocation accumulates `4·row_vecs` output channels ×
/// `4·col_vecs` pixels in registers, as 4-wide vectors so that every workgroup-memory read
/// feeds 16 multiply-adds; the workgroup covers `64·row_vecs × 64·col_vecs` outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tiling {
    pub row_vecs: usize,
    pub col_vecs: usize,
}

impl Tiling {
    /// 8 × 8 outputs an invocation (64 accumulators, a usual register budget on GPUs) and a
    /// 128 × 128 tile: (128 + 128) × 16 f32 = 16 KiB of workgroup memory, WebGPU's default
    /// `maxComputeWorkgroupStorageSize`. Smaller tiles where the output has too few channels or
    /// pixels to fill them, so the workgroups stay many.
    ///
    /// In the browser the pixel side stays 64 wide: with 128-wide pixel tiles Chromium's
    /// SwiftShader spent minutes on a 1×5→20-channel 50×45 conv and then lost the device (the
    /// same kernel runs correctly on lavapipe). Not yet known whether GPUs' WebGPU drivers are
    /// affected, so the browser does without the wider tile until that is found out.
    pub fn for_shape(out_channels: usize, pixels: usize) -> Self {
        let wide_pixels = pixels >= 2048 && cfg!(not(target_arch = "wasm32"));
        Tiling { row_vecs: if out_channels >= 256 { 2 } else { 1 }, col_vecs: if wide_pixels { 2 } else { 1 } }
    }

    /// Whether the loaders' index arithmetic holds: every invocation loads whole vectors of
    /// both tiles and keeps the same pixels and the same depth index throughout.
    pub fn is_valid(&self) -> bool {
        let (rows, cols) = (THREADS_SIDE * self.row_vecs, THREADS_SIDE * self.col_vecs);
        (1..=2).contains(&self.row_vecs)
            && (1..=2).contains(&self.col_vecs)
            && (rows * DEPTH).is_multiple_of(THREADS)
            && (cols * DEPTH).is_multiple_of(THREADS)
            && THREADS.is_multiple_of(cols)
    }
}

#[derive(CubeLaunch, CubeType)]
struct ConvShape {
    batch: usize,
    channels: usize,
    out_channels: usize,
    height: usize,
    width: usize,
}

pub(crate) type V4 = Vector<f32, Const<4>>;

/// The products of one staged slice, shared by the conv and the matmul: each invocation's
/// `4·rv × 4·cv` accumulators gain `DEPTH` rank-1 updates from the rows tile (`[DEPTH][16·rv]`
/// vec4s) and the columns tile (`[DEPTH][16·cv]` vec4s). Every workgroup-memory read feeds 16
/// multiply-adds.
#[cube]
pub(crate) fn multiply_staged(rows_tile: &Shared<[V4]>, cols_tile: &Shared<[V4]>, acc: &mut Array<V4>, #[comptime] tiling: Tiling) {
    let rv = comptime!(tiling.row_vecs);
    let cv = comptime!(tiling.col_vecs);
    let depth = comptime!(DEPTH);
    let row_vecs = comptime!(THREADS_SIDE * rv);
    let col_vecs = comptime!(THREADS_SIDE * cv);
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let mut a = Array::<V4>::new(rv);
    let mut b = Array::<V4>::new(cv);
    #[unroll]
    for kk in 0..depth {
        #[unroll]
        for i in 0..rv {
            a[i] = rows_tile[kk * row_vecs + ty + i * THREADS_SIDE];
        }
        #[unroll]
        for j in 0..cv {
            b[j] = cols_tile[kk * col_vecs + tx + j * THREADS_SIDE];
        }
        #[unroll]
        for i in 0..rv {
            #[unroll]
            for e in 0..4usize {
                let s = V4::new(a[i].extract(e));
                #[unroll]
                for j in 0..cv {
                    acc[(i * 4 + e) * cv + j] += s * b[j];
                }
            }
        }
    }
}

#[cube(launch_unchecked)]
fn conv3x3_kernel<E: Float>(input: &[E], weight: &[E], bias: &[E], output: &mut [E], shape: ConvShape, #[comptime] tiling: Tiling, #[define(E)] _dtype: ElemType) {
    let rv = comptime!(tiling.row_vecs);
    let cv = comptime!(tiling.col_vecs);
    let depth = comptime!(DEPTH);
    let row_vecs = comptime!(THREADS_SIDE * rv); // vec4s of output channels in the tile
    let col_vecs = comptime!(THREADS_SIDE * cv); // vec4s of pixels in the tile
    let tile_m = comptime!(4 * THREADS_SIDE * rv);
    let tile_n = comptime!(4 * THREADS_SIDE * cv);

    let tid = UNIT_POS as usize;
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let m0 = CUBE_POS_Y as usize * tile_m;
    let n0 = CUBE_POS_X as usize * tile_n;

    let hw = shape.height * shape.width;
    let k_total = shape.channels * 9;
    let n_total = shape.batch * hw;

    // Input loads: this invocation always fills the same vec4 of pixels (4 consecutive).
    let load_nv = tid % col_vecs;
    let load_k_input = tid / col_vecs;
    let mut py = Array::<usize>::new(4usize);
    let mut px = Array::<usize>::new(4usize);
    let mut base = Array::<usize>::new(4usize);
    let mut valid = Array::<bool>::new(4usize);
    #[unroll]
    for e in 0..4usize {
        let pixel = n0 + load_nv * 4 + e;
        valid[e] = pixel < n_total;
        let within = pixel % hw;
        py[e] = within / shape.width;
        px[e] = within % shape.width;
        base[e] = (pixel / hw) * shape.channels * hw;
    }
    // Weight loads: this invocation always fills the same depth index.
    let load_k_weight = tid % depth;
    let load_mv = tid / depth;

    let mut weights_tile = Shared::<[V4]>::new_slice(comptime!(row_vecs * DEPTH));
    let mut input_tile = Shared::<[V4]>::new_slice(comptime!(col_vecs * DEPTH));
    let mut acc = Array::<V4>::new(comptime!(4 * rv * cv));
    #[unroll]
    for i in 0..4 * rv * cv {
        acc[i] = V4::new(0.0);
    }

    let mut k0 = 0usize;
    while k0 < k_total {
        #[unroll]
        for r in 0..comptime!(row_vecs * DEPTH / THREADS) {
            let mv = load_mv + r * comptime!(THREADS / DEPTH);
            let gk = k0 + load_k_weight;
            let mut v = V4::new(0.0);
            #[unroll]
            for e in 0..4usize {
                let gm = m0 + mv * 4 + e;
                if gm < shape.out_channels && gk < k_total {
                    v.insert(e, f32::cast_from(weight[gm * k_total + gk]));
                }
            }
            weights_tile[load_k_weight * row_vecs + mv] = v;
        }
        #[unroll]
        for r in 0..comptime!(col_vecs * DEPTH / THREADS) {
            let k = load_k_input + r * comptime!(THREADS / (THREADS_SIDE * cv));
            let gk = k0 + k;
            let c = gk / 9;
            let tap = gk % 9;
            let dy = tap / 3;
            let dx = tap % 3;
            let mut v = V4::new(0.0);
            #[unroll]
            for e in 0..4usize {
                let iy = py[e] + dy;
                let ix = px[e] + dx;
                if valid[e] && gk < k_total && iy >= 1 && iy <= shape.height && ix >= 1 && ix <= shape.width {
                    v.insert(e, f32::cast_from(input[base[e] + c * hw + (iy - 1) * shape.width + ix - 1]));
                }
            }
            input_tile[k * col_vecs + load_nv] = v;
        }
        sync_cube();

        multiply_staged(&weights_tile, &input_tile, &mut acc, tiling);
        sync_cube();
        k0 += depth;
    }

    #[unroll]
    for i in 0..rv {
        #[unroll]
        for e in 0..4usize {
            let gm = m0 + (ty + i * THREADS_SIDE) * 4 + e;
            if gm < shape.out_channels {
                let bias_value = f32::cast_from(bias[gm]);
                #[unroll]
                for j in 0..cv {
                    let v = acc[(i * 4 + e) * cv + j];
                    #[unroll]
                    for f in 0..4usize {
                        let gn = n0 + (tx + j * THREADS_SIDE) * 4 + f;
                        if gn < n_total {
                            output[((gn / hw) * shape.out_channels + gm) * hw + gn % hw] = E::cast_from(v.extract(f) + bias_value);
                        }
                    }
                }
            }
        }
    }
}

/// The output shape of [`conv3x3`]: `[batch, out_channels, height, width]`.
pub fn output_shape(input: &Shape, weight: &Shape) -> Shape {
    Shape::new([input[0], weight[0], input[2], input[3]])
}

/// `input [B, C, H, W] ⊛ weight [O, C, 3, 3] + bias [O]`, stride 1, padding 1, in f32
/// accumulation whatever the storage dtype.
pub fn conv3x3(input: CubeTensor, weight: CubeTensor, bias: CubeTensor) -> CubeTensor {
    let input = into_contiguous(input);
    let weight = into_contiguous(weight);
    let bias = into_contiguous(bias);
    let [batch, channels, height, width] = input.meta.shape().dims();
    let out_channels = weight.meta.shape()[0];
    let shape = output_shape(input.meta.shape(), weight.meta.shape());
    let output = empty_device_dtype(input.client.clone(), input.device.clone(), shape, input.dtype);

    let pixels = batch * height * width;
    let tiling = Tiling::for_shape(out_channels, pixels);
    debug_assert!(tiling.is_valid(), "conv3x3: tiling {tiling:?} does not divide the workgroup");
    let cube_count = CubeCount::Static(pixels.div_ceil(4 * THREADS_SIDE * tiling.col_vecs) as u32, out_channels.div_ceil(4 * THREADS_SIDE * tiling.row_vecs) as u32, 1);
    let dtype = burn::backend::cubecl::dtype_to_storage_type(input.dtype);
    // SAFETY: every read and write is guarded by the shape checks in the kernel (out-of-range
    // rows, pixels, taps and summed indices load zeros and store nothing).
    unsafe {
        conv3x3_kernel::launch_unchecked(
            &output.client,
            cube_count,
            CubeDim::new_2d(THREADS_SIDE as u32, THREADS_SIDE as u32),
            input.into_buffer_arg(),
            weight.into_buffer_arg(),
            bias.into_buffer_arg(),
            output.clone().into_buffer_arg(),
            ConvShapeLaunch::new(batch, channels, out_channels, height, width),
            tiling,
            dtype,
        );
    }
    output
}
