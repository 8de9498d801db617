//! The loader every model part is built through.

use std::collections::BTreeSet;
use std::ops::Range;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, LayerNorm, LayerNormConfig, Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::error::{Error, Result};

/// Somewhere named tensors can be read from.
pub trait TensorSource {
    /// The shape of tensor `name`, or `None` when the source does not have it.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// The shape of `name` when the model expects `expected`. Sources that make tensors up
    /// (random weights) answer `expected`; real ones answer what they hold.
    fn shape_for(&self, name: &str, _expected: &[usize]) -> Option<Vec<usize>> {
        self.shape(name)
    }
    /// Every tensor name the source holds (for the unexpected-tensor check).
    fn names(&self) -> Vec<String>;
    /// Reads tensor `name` onto `device` as a flat f32 tensor (the loader reshapes it).
    fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor<1>>;
    /// Rows `rows` (along the first dimension) of tensor `name` of `shape`, flat. Sources that
    /// can read part of a tensor override this so the whole tensor never exists on the device.
    fn load_rows(&mut self, name: &str, shape: &[usize], rows: Range<usize>, device: &Device) -> Result<Tensor<1>> {
        let row: usize = shape[1..].iter().product();
        let flat = self.load(name, shape, device)?;
        Ok(flat.narrow(0, rows.start * row, rows.len() * row))
    }
}

/// Builds modules from a [`TensorSource`], checking names and shapes.
pub struct WeightLoader<'a> {
    source: &'a mut dyn TensorSource,
    device: Device,
    /// Float dtype of the model's parameters (f32, or f16 where the device has shader-f16).
    dtype: FloatDType,
    /// Alternative name prefixes tried when a name is absent (`text_model.` in real CLIP files).
    optional_prefixes: Vec<String>,
    used: BTreeSet<String>,
}

impl<'a> WeightLoader<'a> {
    pub fn new(source: &'a mut dyn TensorSource, device: &Device) -> Self {
        Self { source, device: device.clone(), dtype: FloatDType::F32, optional_prefixes: Vec::new(), used: BTreeSet::new() }
    }

    /// Store parameters in `dtype` (they are read as f32 and cast on the device).
    pub fn with_dtype(mut self, dtype: FloatDType) -> Self {
        self.dtype = dtype;
        self
    }

    /// Accept `prefix + name` wherever `name` is asked for and absent.
    pub fn accept_prefix(&mut self, prefix: &str) {
        self.optional_prefixes.push(prefix.to_string());
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// The stored name for `name` (it may carry an optional prefix) and its stored shape.
    fn resolve(&self, name: &str, expected: &[usize]) -> Option<(String, Vec<usize>)> {
        std::iter::once(name.to_string())
            .chain(self.optional_prefixes.iter().map(|p| format!("{p}{name}")))
            .find_map(|n| self.source.shape_for(&n, expected).map(|shape| (n, shape)))
    }

    /// Tensor `name`, which must have exactly `shape`.
    pub fn tensor<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Tensor<D>> {
        let (stored, found) = self.resolve(name, &shape).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        if found != shape {
            return Err(Error::ShapeMismatch { name: stored, expected: shape.to_vec(), found });
        }
        let flat = self.source.load(&stored, &shape, &self.device)?;
        self.used.insert(stored);
        let tensor = flat.reshape(shape);
        Ok(if self.dtype == FloatDType::F32 { tensor } else { tensor.cast(self.dtype) })
    }

    /// Rows `rows` of tensor `name` (whose full shape must be `shape`) as a [rows, shape[1]] tensor.
    pub fn tensor_rows(&mut self, name: &str, shape: [usize; 2], rows: Range<usize>) -> Result<Tensor<2>> {
        let (stored, found) = self.resolve(name, &shape).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        if found != shape {
            return Err(Error::ShapeMismatch { name: stored, expected: shape.to_vec(), found });
        }
        if rows.start >= rows.end || rows.end > shape[0] {
            return Err(Error::Other(format!("rows {rows:?} of `{stored}` outside its {} rows", shape[0])));
        }
        let n = rows.len();
        let flat = self.source.load_rows(&stored, &shape, rows, &self.device)?;
        self.used.insert(stored);
        let tensor = flat.reshape([n, shape[1]]);
        Ok(if self.dtype == FloatDType::F32 { tensor } else { tensor.cast(self.dtype) })
    }

    pub fn param<const D: usize>(&mut self, name: &str, shape: [usize; D]) -> Result<Param<Tensor<D>>> {
        Ok(Param::from_tensor(self.tensor(name, shape)?))
    }

    /// A torch `nn.Linear` (`{prefix}.weight` is `[out, in]`; burn stores `[in, out]`).
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear> {
        let weight = self.tensor(&format!("{prefix}.weight"), [d_out, d_in])?.transpose();
        let bias = if bias { Some(self.param(&format!("{prefix}.bias"), [d_out])?) } else { None };
        Ok(Linear { weight: Param::from_tensor(weight), bias })
    }

    /// A torch `nn.Conv2d` with a square kernel and symmetric padding.
    #[allow(clippy::too_many_arguments)] // torch's own argument list, in its order
    pub fn conv2d(&mut self, prefix: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize, bias: bool) -> Result<Conv2d> {
        let weight = self.param(&format!("{prefix}.weight"), [c_out, c_in, kernel, kernel])?;
        let bias = if bias { Some(self.param(&format!("{prefix}.bias"), [c_out])?) } else { None };
        Ok(Conv2d {
            weight,
            bias,
            stride: [stride, stride],
            kernel_size: [kernel, kernel],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(padding, padding, padding, padding),
        })
    }

    /// A torch `nn.GroupNorm` with affine weight and bias.
    pub fn group_norm(&mut self, prefix: &str, groups: usize, channels: usize, eps: f64) -> Result<GroupNorm> {
        Ok(GroupNorm {
            gamma: Some(self.param(&format!("{prefix}.weight"), [channels])?),
            beta: Some(self.param(&format!("{prefix}.bias"), [channels])?),
            num_groups: groups,
            num_channels: channels,
            epsilon: eps,
            affine: true,
        })
    }

    /// A torch `nn.LayerNorm` with weight and bias.
    pub fn layer_norm(&mut self, prefix: &str, d: usize, eps: f64) -> Result<LayerNorm> {
        let mut norm = LayerNormConfig::new(d).with_epsilon(eps).init(&self.device);
        norm.gamma = self.param(&format!("{prefix}.weight"), [d])?;
        norm.beta = Some(self.param(&format!("{prefix}.bias"), [d])?);
        Ok(norm)
    }

    /// The shape of the source's tensor `name`, if it has one (for widths a config does not give).
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.source.shape(name)
    }

    /// Whether the source holds tensor `name` (to choose between alternative checkpoint layouts).
    pub fn has(&self, name: &str) -> bool {
        self.source.shape(name).is_some()
    }

    /// Names of the source's tensors under `prefix` (empty: all) that no module used.
    pub fn unused(&self, prefix: &str) -> Vec<String> {
        self.source.names().into_iter().filter(|n| n.starts_with(prefix) && !self.used.contains(n)).collect()
    }

    /// Fails when tensors under `prefix` were left unused: a config that does not match the file.
    pub fn finish(&self, prefix: &str) -> Result<()> {
        let unused = self.unused(prefix);
        if unused.is_empty() { Ok(()) } else { Err(Error::UnexpectedTensors(unused)) }
    }
}
