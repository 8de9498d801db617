//! Fused attention, softmax(q·kᵀ·scale)·v, that never materialises the score matrix (a
//! "flash" kernel): each workgroup takes 32 queries of one head and walks the keys 32 at a time,
//! keeping each query's running maximum, running sum and output in f32 registers and rescaling them
//! when the maximum grows (online softmax). The model's chunked route writes up to 64 MiB of scores
//! a chunk and reads them back three times (scale, softmax, ·v); this one keeps a 32 × 32 block in
//! workgroup memory.
//!
//! 256 invocations a workgroup: 32 query rows × 8 lanes. For the scores each invocation computes
//! 4 keys of its row (q·k staged 16 dims at a time); for the output each owns 4 of every 32 value
//! columns. Workgroup memory: 2 + 2 + 4 + 4 KiB, under WebGPU's default 16 KiB.

use burn::tensor::Shape;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::conv3x3::V4;

/// Queries a workgroup takes.
const QUERIES: usize = 32;
/// Keys in each step of the walk.
const KEYS: usize = 32;
/// Invocations along a query row (each holds 4 keys of the 32, or 4 of every 32 value columns).
const LANES: usize = 8;
/// Head dims staged at a time for q·kᵀ.
const DEPTH: usize = 16;
/// Value columns staged at a time for the output.
const COLUMNS: usize = 4 * LANES;
const THREADS: usize = QUERIES * LANES;

/// Sizes and element strides of q, k, v (`[batch, heads, tokens, dim]`, any strides) and of the
/// output (`[batch, tokens, heads, dim]`, written contiguous).
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

#[cube(launch_unchecked)]
fn attention_kernel<E: Float>(q: &[E], k: &[E], v: &[E], output: &mut [E], shape: AttentionShape, #[comptime] head_dim: usize, #[define(E)] _dtype: ElemType) {
    let lane = UNIT_POS_X as usize;
    let row = UNIT_POS_Y as usize;
    let tid = UNIT_POS as usize;
    let q0 = CUBE_POS_X as usize * QUERIES;
    let batch = CUBE_POS_Y as usize / shape.heads;
    let head = CUBE_POS_Y as usize % shape.heads;
    let q_base = batch * shape.q_batch + head * shape.q_head;
    let k_base = batch * shape.k_batch + head * shape.k_head;
    let v_base = batch * shape.v_batch + head * shape.v_head;
    let chunks = comptime!(head_dim.div_ceil(COLUMNS));

    let mut q_tile = Shared::<[f32]>::new_slice(comptime!(QUERIES * DEPTH)); // [query][dim]
    let mut k_tile = Shared::<[V4]>::new_slice(comptime!(DEPTH * KEYS / 4)); // [dim][4 keys]
    let mut v_tile = Shared::<[V4]>::new_slice(comptime!(KEYS * COLUMNS / 4)); // [key][4 columns]
    let mut weights = Shared::<[V4]>::new_slice(comptime!(QUERIES * KEYS / 4)); // [query][4 keys]

    let mut acc = Array::<V4>::new(chunks);
    #[unroll]
    for c in 0..chunks {
        acc[c] = V4::new(0.0);
    }
    // -3e38 stands in for −∞ (WGSL refuses infinite constants); also the score of a key past the end.
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = f32::new(0.0);

    // Loaders: q, 2 elements each; k, one vector of 4 keys by the first half.
    let k_dim_index = tid / LANES;
    let k_vec = tid % LANES;
    // v: one vector of 4 columns of one key each.
    let v_key = tid / LANES;
    let v_vec = tid % LANES;

    let mut k0 = 0usize;
    while k0 < shape.keys {
        // Scores of this row's query against keys k0 + 4·lane .. +4.
        let mut s = V4::new(0.0);
        let mut d0 = 0usize;
        while d0 < head_dim {
            #[unroll]
            for r in 0..comptime!(QUERIES * DEPTH / THREADS) {
                let i = tid + r * THREADS;
                let (gq, gd) = (q0 + i / DEPTH, d0 + i % DEPTH);
                let mut value = f32::new(0.0);
                if gq < shape.queries && gd < head_dim {
                    value = f32::cast_from(q[q_base + gq * shape.q_row + gd * shape.q_dim]);
                }
                q_tile[i] = value;
            }
            if tid < comptime!(DEPTH * KEYS / 4) {
                let gd = d0 + k_dim_index;
                let mut vector = V4::new(0.0);
                #[unroll]
                for e in 0..4usize {
                    let gk = k0 + k_vec * 4 + e;
                    if gk < shape.keys && gd < head_dim {
                        vector.insert(e, f32::cast_from(k[k_base + gk * shape.k_row + gd * shape.k_dim]));
                    }
                }
                k_tile[tid] = vector;
            }
            sync_cube();
            #[unroll]
            for dd in 0..DEPTH {
                s += V4::new(q_tile[row * DEPTH + dd]) * k_tile[dd * LANES + lane];
            }
            sync_cube();
            d0 += DEPTH;
        }
        #[unroll]
        for e in 0..4usize {
            let mut value = f32::new(-3.0e38);
            if k0 + lane * 4 + e < shape.keys {
                value = s.extract(e) * shape.scale;
            }
            s.insert(e, value);
        }
        weights[row * LANES + lane] = s;
        sync_cube();

        // The row's new maximum; what was summed so far shrinks by exp(old − new).
        let mut block_max = running_max;
        #[unroll]
        for j in 0..LANES {
            let w = weights[row * LANES + j];
            block_max = max(block_max, max(max(w.extract(0usize), w.extract(1usize)), max(w.extract(2usize), w.extract(3usize))));
        }
        let rescale = (running_max - block_max).exp();
        running_max = block_max;
        sync_cube();
        let mut p = V4::new(0.0);
        #[unroll]
        for e in 0..4usize {
            p.insert(e, (s.extract(e) - block_max).exp());
        }
        weights[row * LANES + lane] = p;
        sync_cube();
        running_sum *= rescale;
        #[unroll]
        for j in 0..LANES {
            let w = weights[row * LANES + j];
            running_sum += w.extract(0usize) + w.extract(1usize) + w.extract(2usize) + w.extract(3usize);
        }

        // output += p · v, 32 value columns at a time.
        #[unroll]
        for c in 0..chunks {
            let gk = k0 + v_key;
            let mut vector = V4::new(0.0);
            #[unroll]
            for e in 0..4usize {
                let gd = c * COLUMNS + v_vec * 4 + e;
                if gk < shape.keys && gd < head_dim {
                    vector.insert(e, f32::cast_from(v[v_base + gk * shape.v_row + gd * shape.v_dim]));
                }
            }
            v_tile[tid] = vector;
            sync_cube();
            let mut sum = acc[c] * V4::new(rescale);
            #[unroll]
            for j in 0..LANES {
                let w = weights[row * LANES + j];
                #[unroll]
                for e in 0..4usize {
                    sum += V4::new(w.extract(e)) * v_tile[(j * 4 + e) * LANES + lane];
                }
            }
            acc[c] = sum;
            sync_cube();
        }
        k0 += KEYS;
    }

    let gq = q0 + row;
    if gq < shape.queries {
        let out_row = ((batch * shape.queries + gq) * shape.heads + head) * head_dim;
        #[unroll]
        for c in 0..chunks {
            #[unroll]
            for e in 0..4usize {
                let gd = c * COLUMNS + lane * 4 + e;
                if gd < head_dim {
                    output[out_row + gd] = E::cast_from(acc[c].extract(e) / running_sum);
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
            CubeDim::new_2d(LANES as u32, QUERIES as u32),
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
