//! GroupNorm (optionally followed by SiLU) in three small kernels: partial sums of each group's
//! chunks, the groups' statistics, then normalise-scale-shift(-activate) in one pass over the
//! tensor. burn's GroupNorm on WGSL is a composed chain whose reductions run one invocation per
//! group, each summing the whole group serially (docs/KERNELS.md Q1d): 64 invocations for a
//! batch-2 UNet map. Here every group is cut into chunks that whole workgroups reduce.
//!
//! Statistics are in f32 whatever the storage dtype, and shifted by the group's first value
//! (sums of `x − x₀` and `(x − x₀)²`), so a mean far from zero costs no precision.

use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

/// Invocations per workgroup of the reduction (WebGPU's default limit).
const THREADS: usize = 256;
/// Elements each reduction invocation sums: a chunk is `THREADS · PER_THREAD` elements.
const PER_THREAD: usize = 16;

#[derive(CubeLaunch, CubeType)]
struct NormShape {
    /// Elements of one group (channels per group × pixels); a group is contiguous in NCHW.
    group_len: usize,
    /// Chunks each group is cut into.
    splits: usize,
    /// Pixels per channel.
    hw: usize,
    channels: usize,
    /// Elements of the whole tensor.
    total: usize,
    /// Groups of the whole batch (batch × groups).
    groups: usize,
    epsilon: f32,
}

/// Workgroup (chunk, group): the shifted sum and sum of squares of its chunk, into
/// `partials[(group · splits + chunk) · 2 ..]`.
#[cube(launch_unchecked)]
fn partial_sums_kernel<E: Float>(input: &[E], partials: &mut [f32], shape: NormShape, #[define(E)] _dtype: ElemType) {
    let chunk = CUBE_POS_X as usize;
    let group = CUBE_POS_Y as usize;
    let tid = UNIT_POS as usize;
    let step = comptime!(THREADS);
    let start = group * shape.group_len;
    let shift = f32::cast_from(input[start]);
    let begin = chunk * comptime!(THREADS * PER_THREAD);

    // Each invocation sums PER_THREAD elements, THREADS apart, into its own slots.
    let mut sums = Shared::<[f32]>::new_slice(step);
    let mut sums_sq = Shared::<[f32]>::new_slice(step);
    sums[tid] = 0f32;
    sums_sq[tid] = 0f32;
    #[unroll]
    for k in 0..PER_THREAD {
        let i = begin + tid + k * step;
        if i < shape.group_len {
            let d = f32::cast_from(input[start + i]) - shift;
            sums[tid] += d;
            sums_sq[tid] += d * d;
        }
    }
    sync_cube();
    // Halve the active invocations each round, each adding its partner's slots to its own.
    let mut active = CUBE_DIM;
    while active > 1 {
        active /= 2;
        if UNIT_POS < active {
            let partner = tid + active as usize;
            let (s, q) = (sums[partner], sums_sq[partner]);
            sums[tid] += s;
            sums_sq[tid] += q;
        }
        sync_cube();
    }
    if tid == 0 {
        let at = (group * shape.splits + chunk) * 2;
        partials[at] = sums[0];
        partials[at + 1] = sums_sq[0];
    }
}

/// One invocation per group: its mean and 1/√(variance + ε) from the chunks' partial sums, into
/// `stats[group · 2 ..]`.
#[cube(launch_unchecked)]
fn statistics_kernel<E: Float>(input: &[E], partials: &[f32], stats: &mut [f32], shape: NormShape, #[define(E)] _dtype: ElemType) {
    let group = ABSOLUTE_POS;
    if group < shape.groups {
        let mut sum = 0f32;
        let mut squares = 0f32;
        for chunk in 0..shape.splits {
            let at = (group * shape.splits + chunk) * 2;
            sum += partials[at];
            squares += partials[at + 1];
        }
        let n = f32::cast_from(shape.group_len);
        let shifted_mean = sum / n;
        let mut variance = squares / n - shifted_mean * shifted_mean;
        if variance < 0f32 {
            variance = 0f32;
        }
        stats[group * 2] = f32::cast_from(input[group * shape.group_len]) + shifted_mean;
        stats[group * 2 + 1] = 1f32 / (variance + shape.epsilon).sqrt();
    }
}

/// One invocation per element: `(x − mean) · rstd · γ[c] + β[c]`, then SiLU if `silu`.
#[cube(launch_unchecked)]
fn normalize_kernel<E: Float>(input: &[E], stats: &[f32], gamma: &[E], beta: &[E], output: &mut [E], shape: NormShape, #[comptime] silu: bool, #[define(E)] _dtype: ElemType) {
    let i = ABSOLUTE_POS;
    if i < shape.total {
        let group = i / shape.group_len;
        let channel = (i / shape.hw) % shape.channels;
        let x = f32::cast_from(input[i]);
        let mut y = (x - stats[group * 2]) * stats[group * 2 + 1] * f32::cast_from(gamma[channel]) + f32::cast_from(beta[channel]);
        if comptime!(silu) {
            y = y / (1f32 + (-y).exp());
        }
        output[i] = E::cast_from(y);
    }
}

/// GroupNorm of `input [B, C, ...]` over `groups` groups of channels, scaled by `gamma [C]` and
/// shifted by `beta [C]`, then SiLU where `silu`; statistics in f32, the output in the input's
/// dtype.
pub fn group_norm(input: CubeTensor, gamma: CubeTensor, beta: CubeTensor, groups: usize, epsilon: f64, silu: bool) -> CubeTensor {
    let input = into_contiguous(input);
    let gamma = into_contiguous(gamma);
    let beta = into_contiguous(beta);
    let shape_in = input.meta.shape();
    let (batch, channels, total) = (shape_in[0], shape_in[1], shape_in.num_elements());
    let hw = total / (batch * channels).max(1);
    let group_len = channels / groups * hw;
    let splits = group_len.div_ceil(THREADS * PER_THREAD);
    let all_groups = batch * groups;
    let shape = || NormShapeLaunch::new(group_len, splits, hw, channels, total, all_groups, epsilon as f32);

    let client = input.client.clone();
    let f32_buffer = |n: usize| empty_device_dtype(client.clone(), input.device.clone(), burn::tensor::Shape::new([n]), burn::tensor::DType::F32);
    let partials = f32_buffer(all_groups * splits * 2);
    let stats = f32_buffer(all_groups * 2);
    let output = empty_device_dtype(client.clone(), input.device.clone(), input.meta.shape().clone(), input.dtype);
    let dtype = burn::backend::cubecl::dtype_to_storage_type(input.dtype);
    let elementwise = |n: usize| {
        let cube_dim = CubeDim::new(&client, n);
        (calculate_cube_count_elemwise(&client, n, cube_dim), cube_dim)
    };
    let (stats_count, stats_dim) = elementwise(all_groups);
    let (count, dim) = elementwise(total);
    // SAFETY: the reduction reads `begin + tid + k·THREADS < end ≤ group_len` within its group
    // and writes its own partial slot; the statistics and normalisation kernels guard their index
    // against the number of groups / elements; every buffer is sized from the same shape.
    unsafe {
        partial_sums_kernel::launch_unchecked(
            &client,
            CubeCount::Static(splits as u32, all_groups as u32, 1),
            CubeDim::new_1d(THREADS as u32),
            input.clone().into_buffer_arg(),
            partials.clone().into_buffer_arg(),
            shape(),
            dtype,
        );
        statistics_kernel::launch_unchecked(
            &client,
            stats_count,
            stats_dim,
            input.clone().into_buffer_arg(),
            partials.into_buffer_arg(),
            stats.clone().into_buffer_arg(),
            shape(),
            dtype,
        );
        normalize_kernel::launch_unchecked(
            &client,
            count,
            dim,
            input.into_buffer_arg(),
            stats.into_buffer_arg(),
            gamma.into_buffer_arg(),
            beta.into_buffer_arg(),
            output.clone().into_buffer_arg(),
            shape(),
            silu,
            dtype,
        );
    }
    output
}
