//! A batched matmul, `lhs [B0, B1, M, K] · rhs [B0, B1, K, N] (+ bias [N])`, with the conv's
//! tiles: each workgroup stages `DEPTH`-deep slices of both operands in workgroup memory and each
//! invocation accumulates a 4·rv × 4·cv block of outputs in f32 registers. Operands are read
//! through their strides, so transposed or broadcast views (kᵀ in attention, one weight for every
//! batch) need no copy. burn's matmul on WGSL without autotune (cubek's default selection) took
//! 10.5 s for a 8×1280 · 1280×10240 linear on SwiftShader (docs/PERFORMANCE.md).

use burn::tensor::Shape;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::conv3x3::{DEPTH, THREADS, THREADS_SIDE, Tiling, V4, multiply_staged};

/// Sizes and element strides. Batch dims of size 1 have stride 0 (broadcast).
#[derive(CubeLaunch, CubeType)]
struct MatmulShape {
    m: usize,
    n: usize,
    k: usize,
    inner_batches: usize,
    lhs_outer: usize,
    lhs_inner: usize,
    lhs_row: usize,
    lhs_depth: usize,
    rhs_outer: usize,
    rhs_inner: usize,
    rhs_depth: usize,
    rhs_col: usize,
}

#[cube(launch_unchecked)]
fn matmul_kernel<E: Float>(
    lhs: &[E],
    rhs: &[E],
    bias: &[E],
    output: &mut [E],
    shape: MatmulShape,
    #[comptime] tiling: Tiling,
    #[comptime] has_bias: bool,
    #[define(E)] _dtype: ElemType,
) {
    let rv = comptime!(tiling.row_vecs);
    let cv = comptime!(tiling.col_vecs);
    let depth = comptime!(DEPTH);
    let row_vecs = comptime!(THREADS_SIDE * rv); // vec4s of output rows in the tile
    let col_vecs = comptime!(THREADS_SIDE * cv); // vec4s of output columns in the tile
    let tile_m = comptime!(4 * THREADS_SIDE * rv);
    let tile_n = comptime!(4 * THREADS_SIDE * cv);

    let tid = UNIT_POS as usize;
    let tx = UNIT_POS_X as usize;
    let ty = UNIT_POS_Y as usize;
    let m0 = CUBE_POS_Y as usize * tile_m;
    let n0 = CUBE_POS_X as usize * tile_n;
    let batch = CUBE_POS_Z as usize;
    let outer = batch / shape.inner_batches;
    let inner = batch % shape.inner_batches;
    let lhs_base = outer * shape.lhs_outer + inner * shape.lhs_inner;
    let rhs_base = outer * shape.rhs_outer + inner * shape.rhs_inner;

    // lhs loads: this invocation always fills the same depth index; rhs loads: the same 4 columns.
    let load_k_lhs = tid % depth;
    let load_mv = tid / depth;
    let load_nv = tid % col_vecs;
    let load_k_rhs = tid / col_vecs;

    let mut lhs_tile = Shared::<[V4]>::new_slice(comptime!(row_vecs * DEPTH));
    let mut rhs_tile = Shared::<[V4]>::new_slice(comptime!(col_vecs * DEPTH));
    let mut acc = Array::<V4>::new(comptime!(4 * rv * cv));
    #[unroll]
    for i in 0..4 * rv * cv {
        acc[i] = V4::new(0.0);
    }

    let mut k0 = 0usize;
    while k0 < shape.k {
        #[unroll]
        for r in 0..comptime!(row_vecs * DEPTH / THREADS) {
            let mv = load_mv + r * comptime!(THREADS / DEPTH);
            let gk = k0 + load_k_lhs;
            let mut v = V4::new(0.0);
            #[unroll]
            for e in 0..4usize {
                let gm = m0 + mv * 4 + e;
                if gm < shape.m && gk < shape.k {
                    v.insert(e, f32::cast_from(lhs[lhs_base + gm * shape.lhs_row + gk * shape.lhs_depth]));
                }
            }
            lhs_tile[load_k_lhs * row_vecs + mv] = v;
        }
        #[unroll]
        for r in 0..comptime!(col_vecs * DEPTH / THREADS) {
            let kk = load_k_rhs + r * comptime!(THREADS / (THREADS_SIDE * cv));
            let gk = k0 + kk;
            let mut v = V4::new(0.0);
            #[unroll]
            for e in 0..4usize {
                let gn = n0 + load_nv * 4 + e;
                if gn < shape.n && gk < shape.k {
                    v.insert(e, f32::cast_from(rhs[rhs_base + gk * shape.rhs_depth + gn * shape.rhs_col]));
                }
            }
            rhs_tile[kk * col_vecs + load_nv] = v;
        }
        sync_cube();

        multiply_staged(&lhs_tile, &rhs_tile, &mut acc, tiling);
        sync_cube();
        k0 += depth;
    }

    #[unroll]
    for i in 0..rv {
        #[unroll]
        for e in 0..4usize {
            let gm = m0 + (ty + i * THREADS_SIDE) * 4 + e;
            if gm < shape.m {
                #[unroll]
                for j in 0..cv {
                    let v = acc[(i * 4 + e) * cv + j];
                    #[unroll]
                    for f in 0..4usize {
                        let gn = n0 + (tx + j * THREADS_SIDE) * 4 + f;
                        if gn < shape.n {
                            let mut value = v.extract(f);
                            if has_bias {
                                value += f32::cast_from(bias[gn]);
                            }
                            output[(batch * shape.m + gm) * shape.n + gn] = E::cast_from(value);
                        }
                    }
                }
            }
        }
    }
}

/// The output shape of [`matmul`]: the larger of each batch dim, then `[M, N]`.
pub fn output_shape(lhs: &Shape, rhs: &Shape) -> Shape {
    let (l, r) = (lhs.as_slice(), rhs.as_slice());
    assert!(l.len() == 4 && r.len() == 4, "matmul: 4-d operands, got {lhs} · {rhs}");
    Shape::new([l[0].max(r[0]), l[1].max(r[1]), l[2], r[3]])
}

/// `lhs [B0, B1, M, K] · rhs [B0, B1, K, N] (+ bias [N])` in f32 accumulation whatever the
/// storage dtype; a batch dim of size 1 on one side is broadcast to the other's.
pub fn matmul(lhs: CubeTensor, rhs: CubeTensor, bias: Option<CubeTensor>) -> CubeTensor {
    let shape = output_shape(lhs.meta.shape(), rhs.meta.shape());
    let [b0, b1, m, n] = shape.dims();
    let k = lhs.meta.shape()[3];
    assert_eq!(rhs.meta.shape()[2], k, "matmul: {} · {}", lhs.meta.shape(), rhs.meta.shape());
    for (dim, size) in [b0, b1].into_iter().enumerate() {
        for operand in [&lhs, &rhs] {
            let own = operand.meta.shape()[dim];
            assert!(own == size || own == 1, "matmul: batch dims {} · {}", lhs.meta.shape(), rhs.meta.shape());
        }
    }
    // A broadcast dim is read with stride 0: every batch reads the same elements.
    let stride = |t: &CubeTensor, dim: usize| if t.meta.shape()[dim] == 1 { 0 } else { t.meta.strides()[dim] };
    let launch_shape = MatmulShapeLaunch::new(
        m,
        n,
        k,
        b1,
        stride(&lhs, 0),
        stride(&lhs, 1),
        lhs.meta.strides()[2],
        lhs.meta.strides()[3],
        stride(&rhs, 0),
        stride(&rhs, 1),
        rhs.meta.strides()[2],
        rhs.meta.strides()[3],
    );
    let output = empty_device_dtype(lhs.client.clone(), lhs.device.clone(), shape, lhs.dtype);
    // The conv's choice, rows for output channels and columns for pixels: wide rows where there
    // are many, wide columns only natively.
    let tiling = Tiling::for_shape(m, n);
    debug_assert!(tiling.is_valid(), "matmul: tiling {tiling:?} does not divide the workgroup");
    let cube_count = CubeCount::Static(n.div_ceil(4 * THREADS_SIDE * tiling.col_vecs) as u32, m.div_ceil(4 * THREADS_SIDE * tiling.row_vecs) as u32, (b0 * b1) as u32);
    let dtype = burn::backend::cubecl::dtype_to_storage_type(lhs.dtype);
    let has_bias = bias.is_some();
    // Without a bias the kernel never reads its bias binding: one element stands in for it.
    let bias = bias.unwrap_or_else(|| empty_device_dtype(lhs.client.clone(), lhs.device.clone(), Shape::new([1]), lhs.dtype));
    // SAFETY: every read and write is guarded by the shape checks in the kernel (rows, columns
    // and summed indices out of range load zeros and store nothing); the strides and batch
    // offsets are the operands' own, so every index read lies within its binding.
    unsafe {
        matmul_kernel::launch_unchecked(
            &output.client,
            cube_count,
            CubeDim::new_2d(THREADS_SIDE as u32, THREADS_SIDE as u32),
            lhs.into_buffer_arg(),
            rhs.into_buffer_arg(),
            bias.into_buffer_arg(),
            output.clone().into_buffer_arg(),
            launch_shape,
            tiling,
            has_bias,
            dtype,
        );
    }
    output
}
