//! A small real computation (conv2d, matmul, softmax) that proves burn runs on a device. The page
//! runs it in its worker on WebGPU; the native CLI prints the same numbers for the browser test to
//! compare against.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::softmax;
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

fn filled<const D: usize>(shape: [usize; D], f: impl Fn(usize) -> f32, device: &Device) -> Tensor<D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new((0..n).map(f).collect::<Vec<f32>>(), shape), device)
}

/// The probe graph, on `device`; the result is `[3, 4]`.
pub fn probe_tensor(device: &Device) -> Tensor<2> {
    let x = filled([1, 2, 5, 5], |i| (i as f32 * 0.37).sin(), device);
    let w = filled([3, 2, 3, 3], |i| (i as f32 * 0.11).cos() * 0.5, device);
    let b = filled([3], |i| i as f32 * 0.1 - 0.1, device);
    let y = conv2d(x, w, Some(b), ConvOptions::new([1, 1], [1, 1], [1, 1], 1));
    let m = filled([25, 4], |i| (i as f32 * 0.05).sin(), device);
    softmax(y.reshape([3, 25]).matmul(m), 1)
}

/// The probe's 12 values, synchronously (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn probe(device: &Device) -> Vec<f32> {
    probe_tensor(device).into_data().try_to_vec().expect("probe output is f32")
}

/// The probe's 12 values (wasm: reading back from WebGPU is asynchronous). A failed read is
/// `GpuLost`, as for every other readback, not a panic.
pub async fn probe_async(device: &Device) -> crate::Result<Vec<f32>> {
    let data = probe_tensor(device).into_data_async().await.map_err(|e| crate::Error::readback("the probe", e))?;
    data.try_to_vec().map_err(|e| crate::Error::Other(format!("the probe's output: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe is a proper softmax over 4 columns and not a constant.
    #[test]
    fn probe_rows_are_distributions() {
        let values = probe(&Device::flex());
        assert_eq!(values.len(), 12);
        for row in values.chunks(4) {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row sums to {sum}");
        }
        assert!(values.iter().any(|v| (v - values[0]).abs() > 1e-3), "probe output is constant");
    }
}
