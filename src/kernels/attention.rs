//! Fused attention, softmax(q·kᵀ·scale)·v, that never materialises the score matrix (a
//! "flash" kernel). Each invocation owns one query: its row of q and of the output stay in f32
//! registers while it walks the keys 8 at a time, with a running maximum and sum, rescaling what
//! it has summed when the maximum grows (online softmax). No invocation waits for another: the
//! 64 queries of a workgroup read the same key and value at the same moment, which a GPU serves as
//! one broadcast read. The model's chunked route writes up to 64 MiB of scores a chunk and reads
//! them back three times (scale, softmax, ·v).
//!
//! Why no workgroup memory: CPU implementations of WebGPU and Vulkan (SwiftShader, which runs the
//! browser tests, and lavapipe) run a workgroup's barriers as coroutine switches. A first version
//! that spread each query over 8 invocations (the row's maximum and sum through workgroup memory,
//! 13 barriers every 32 keys) ran 4.7× slower than burn's matmuls on lavapipe, and a second that
//! staged k and v in workgroup memory for 64 one-query invocations took lavapipe's shader compiler
//! (LLVM's coroutine splitting) over 15 minutes to build.

use burn::tensor::Shape;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::conv3x3::V4;

/// Queries a workgroup takes: one an invocation.
const QUERIES: usize = 64;
/// Keys in each step of the walk: their scores are computed before the running maximum moves.
const KEYS: usize = 8;
/// The widest head the kernel takes: q and the output row are 2 × 160 f32 registers an invocation
/// there (SD 1.5's widest head; SD 2 and SDXL use 64). The VAE's one 512-wide head takes the
/// model's chunked route.
pub const MAX_HEAD_DIM: usize = 160;

/// Sizes and element strides of q, k, v (`[batch, heads, tokens, dim]`, any strides); the output
/// (`[batch, tokens, heads, dim]`) is written contiguous.
#[derive(CubeLaunch, CubeType)]
struct AttentionShape {
    queries: usize,
    keys: usize,
    heads: usize,
    q_batch: usize,
    q_head: usize,
    q_row: usize,
    q_dim: usize,
    k_batch: usize,
    k_head: usize,
    k_row: usize,
    k_dim: usize,
    v_batch: usize,
    v_head: usize,
    v_row: usize,
    v_dim: usize,
    scale: f32,
}

/// Elements `row + 4·i .. +4` of a head row (`stride` apart), zeros past `head_dim`.
#[cube]
fn read_vec<E: Float>(t: &[E], row: usize, stride: usize, i: usize, #[comptime] head_dim: usize) -> V4 {
    let mut vector = V4::new(0.0);
    #[unroll]
    for e in 0..4usize {
        if i * 4 + e < head_dim {
            vector.insert(e, f32::cast_from(t[row + (i * 4 + e) * stride]));
        }
    }
    vector
}

#[cube(launch_unchecked)]
fn attention_kernel<E: Float>(q: &[E], k: &[E], v: &[E], output: &mut [E], shape: AttentionShape, #[comptime] head_dim: usize, #[define(E)] _dtype: ElemType) {
    let gq = CUBE_POS_X as usize * QUERIES + UNIT_POS as usize;
    let batch = CUBE_POS_Y as usize / shape.heads;
    let head = CUBE_POS_Y as usize % shape.heads;
    let k_base = batch * shape.k_batch + head * shape.k_head;
    let v_base = batch * shape.v_batch + head * shape.v_head;
    let dim_vecs = comptime!(head_dim.div_ceil(4));

    // This invocation's query, times the scale. A query past the end reads query 0 and stores
    // nothing (so that all invocations read the same keys).
    let q_row = batch * shape.q_batch + head * shape.q_head + select(gq < shape.queries, gq, 0) * shape.q_row;
    let mut query = Array::<V4>::new(dim_vecs);
    let mut acc = Array::<V4>::new(dim_vecs);
    #[unroll]
    for i in 0..dim_vecs {
        query[i] = read_vec::<E>(q, q_row, shape.q_dim, i, head_dim) * V4::new(shape.scale);
        acc[i] = V4::new(0.0);
    }
    // -3e38 stands in for −∞: WGSL refuses infinite constants.
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = f32::new(0.0);
    let mut scores = Array::<f32>::new(KEYS);

    let mut k0 = 0usize;
    while k0 < shape.keys {
        let mut block_max = running_max;
        #[unroll]
        for j in 0..KEYS {
            let mut score = f32::new(-3.0e38);
            if k0 + j < shape.keys {
                let row = k_base + (k0 + j) * shape.k_row;
                let mut dot = V4::new(0.0);
                #[unroll]
                for i in 0..dim_vecs {
                    dot += query[i] * read_vec::<E>(k, row, shape.k_dim, i, head_dim);
                }
                score = dot.extract(0usize) + dot.extract(1usize) + dot.extract(2usize) + dot.extract(3usize);
                block_max = max(block_max, score);
            }
            scores[j] = score;
        }
        // Online softmax: what was summed so far shrinks by exp(old maximum − new).
        let rescale = (running_max - block_max).exp();
        running_max = block_max;
        running_sum *= rescale;
        #[unroll]
        for i in 0..dim_vecs {
            acc[i] *= V4::new(rescale);
        }
        #[unroll]
        for j in 0..KEYS {
            if k0 + j < shape.keys {
                let p = (scores[j] - block_max).exp();
                running_sum += p;
                let row = v_base + (k0 + j) * shape.v_row;
                #[unroll]
                for i in 0..dim_vecs {
                    acc[i] += V4::new(p) * read_vec::<E>(v, row, shape.v_dim, i, head_dim);
                }
            }
        }
        k0 += KEYS;
    }

    if gq < shape.queries {
        let out_row = ((batch * shape.queries + gq) * shape.heads + head) * head_dim;
        #[unroll]
        for i in 0..dim_vecs {
            #[unroll]
            for e in 0..4usize {
                if i * 4 + e < head_dim {
                    output[out_row + i * 4 + e] = E::cast_from(acc[i].extract(e) / running_sum);
                }
            }
        }
    }
}

/// The output shape of [`attention`]: `[batch, queries, heads, dim]` for q `[batch, heads, queries,
/// dim]` (tokens first, so that joining the heads after is a reshape, not a copy).
pub fn output_shape(q: &Shape, v: &Shape) -> Shape {
    let (q, v) = (q.as_slice(), v.as_slice());
    assert!(q.len() == 4 && v.len() == 4, "attention: 4-d operands, got {q:?}, {v:?}");
    Shape::new([q[0], q[2], q[1], v[3]])
}

/// softmax(q·kᵀ·scale)·v for q `[B, H, Sq, D]`, k and v `[B, H, Sk, D]` (read through their
/// strides), in f32 whatever the storage dtype; the output is `[B, Sq, H, D]`.
pub fn attention(q: CubeTensor, k: CubeTensor, v: CubeTensor, scale: f64) -> CubeTensor {
    let shape = output_shape(q.meta.shape(), v.meta.shape());
    let [b, h, sq, d] = q.meta.shape().dims();
    let sk = k.meta.shape()[2];
    assert!(d <= MAX_HEAD_DIM, "attention: head dim {d} over {MAX_HEAD_DIM}");
    for t in [&k, &v] {
        let s = t.meta.shape();
        assert!(s[0] == b && s[1] == h && s[2] == sk && s[3] == d, "attention: q {}, k {}, v {}", q.meta.shape(), k.meta.shape(), v.meta.shape());
    }
    let strides = |t: &CubeTensor| -> [usize; 4] { std::array::from_fn(|i| t.meta.strides()[i]) };
    let ([qb, qh, qr, qd], [kb, kh, kr, kd], [vb, vh, vr, vd]) = (strides(&q), strides(&k), strides(&v));
    let launch_shape = AttentionShapeLaunch::new(sq, sk, h, qb, qh, qr, qd, kb, kh, kr, kd, vb, vh, vr, vd, scale as f32);
    let output = empty_device_dtype(q.client.clone(), q.device.clone(), shape, q.dtype);
    let dtype = burn::backend::cubecl::dtype_to_storage_type(q.dtype);
    let cube_count = CubeCount::Static(sq.div_ceil(QUERIES) as u32, (b * h) as u32, 1);
    // SAFETY: every read is guarded by the sizes (queries, keys and dims out of range load zeros)
    // and made through the operands' own strides within their batch and head; every write is to a
    // query and dim in range of the `[B, Sq, H, D]` output.
    unsafe {
        attention_kernel::launch_unchecked(
            &output.client,
            cube_count,
            CubeDim::new_1d(QUERIES as u32),
            q.into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            output.clone().into_buffer_arg(),
            launch_shape,
            d,
            dtype,
        );
    }
    output
}
