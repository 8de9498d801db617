//! Tensors from safetensors files: diffusers/transformers component folders and fixture files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors};

use super::TensorSource;
use crate::error::{Error, Result};

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The tensors of one or more safetensors files, held in memory.
pub struct SafetensorsSource {
    files: Vec<(String, Vec<u8>)>,
    entries: HashMap<String, Entry>,
}

impl SafetensorsSource {
    /// Parses safetensors bytes; `what` names the file in errors.
    pub fn from_bytes(what: &str, bytes: Vec<u8>) -> Result<Self> {
        let mut source = Self { files: Vec::new(), entries: HashMap::new() };
        source.add(what, bytes)?;
        Ok(source)
    }

    /// Every weights file of a component folder (sharded checkpoints have several).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let paths = model_files(dir.as_ref())?;
        let mut source = Self { files: Vec::new(), entries: HashMap::new() };
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            source.add(&path.display().to_string(), bytes)?;
        }
        Ok(source)
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&path.display().to_string(), bytes)
    }

    fn add(&mut self, what: &str, bytes: Vec<u8>) -> Result<()> {
        let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let data_start = 8 + header_len;
        let file = self.files.len();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            if self.entries.contains_key(&name) {
                return Err(bad(format!("tensor `{name}` appears in more than one file")));
            }
            self.entries.insert(name, Entry { file, dtype: info.dtype, shape: info.shape.clone(), start: data_start + start, end: data_start + end });
        }
        self.files.push((what.to_string(), bytes));
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    /// Tensor `name` as f32 values and its shape (f32, f16 and bf16 are read).
    pub fn read_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let e = self.entry(name)?;
        Ok((self.decode_f32(name, e.start, e.end)?, e.shape.clone()))
    }

    /// Rows `rows` (first dimension) of tensor `name` as f32, reading only their bytes.
    pub fn read_f32_rows(&self, name: &str, rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let rows_total = e.shape.first().copied().unwrap_or(1);
        if rows.start > rows.end || rows.end > rows_total {
            return Err(Error::Other(format!("rows {rows:?} of `{name}` outside its {rows_total} rows")));
        }
        let row_bytes = (e.end - e.start) / rows_total.max(1);
        self.decode_f32(name, e.start + rows.start * row_bytes, e.start + rows.end * row_bytes)
    }

    fn decode_f32(&self, name: &str, start: usize, end: usize) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let bytes = &self.files[e.file].1[start..end];
        Ok(match e.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            other => return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
        })
    }

    pub fn read_i64(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let e = self.entry(name)?;
        let bytes = &self.files[e.file].1[e.start..e.end];
        let values = match e.dtype {
            Dtype::I64 => bytes.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::I32 => bytes.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect(),
            other => return Err(Error::UnsupportedDtype { name: name.to_string(), dtype: format!("{other:?}") }),
        };
        Ok((values, e.shape.clone()))
    }

    /// The stored dtype of `name` (e.g. to report that a fixture was kept in f16).
    pub fn dtype(&self, name: &str) -> Option<String> {
        self.entries.get(name).map(|e| format!("{:?}", e.dtype))
    }

    /// Tensor `name` on `device` with rank `D` (for fixtures' inputs and references).
    pub fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Result<Tensor<D>> {
        let (values, shape) = self.read_f32(name)?;
        let shape: [usize; D] = shape.clone().try_into().map_err(|_| Error::ShapeMismatch { name: name.to_string(), expected: vec![0; D], found: shape })?;
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}

impl TensorSource for SafetensorsSource {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.entries.get(name).map(|e| e.shape.clone())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().cloned().collect();
        names.sort();
        names
    }

    fn load(&mut self, name: &str, _shape: &[usize], device: &Device) -> Result<Tensor<1>> {
        let (values, _) = self.read_f32(name)?;
        let n = values.len();
        Ok(Tensor::from_data(TensorData::new(values, [n]), device))
    }

    fn load_rows(&mut self, name: &str, _shape: &[usize], rows: std::ops::Range<usize>, device: &Device) -> Result<Tensor<1>> {
        let values = self.read_f32_rows(name, rows)?;
        let n = values.len();
        Ok(Tensor::from_data(TensorData::new(values, [n]), device))
    }
}

/// A component folder's weights files, sorted. diffusers/transformers name them
/// `diffusion_pytorch_model[-0000k-of-0000n].safetensors` or `model[...].safetensors`, with an
/// optional `.fp16` variant beside them: the full-precision files are taken when both are present.
pub fn model_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let names: Vec<String> = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let picked = pick_model_files(names);
    if picked.is_empty() {
        return Err(Error::Other(format!("no model .safetensors file in {}", dir.display())));
    }
    Ok(picked.into_iter().map(|n| dir.join(n)).collect())
}

/// Of a component folder's file names, the model's weights: `diffusion_pytorch_model*.safetensors`
/// or `model*.safetensors` (shards included), without the `.fp16.` variants when the full ones are
/// there; sorted. The loader and the converter both choose by this.
pub fn pick_model_files(names: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> =
        names.into_iter().filter(|name| name.ends_with(".safetensors") && (name.starts_with("diffusion_pytorch_model") || name.starts_with("model"))).collect();
    let is_variant = |n: &String| n.contains(".fp16.");
    if names.iter().any(|n| !is_variant(n)) {
        names.retain(|n| !is_variant(n));
    }
    names.sort();
    names
}

/// Loads a diffusers component folder (`unet/`, `vae/`, …): its config.json, read by `parse`, and
/// the safetensors beside it, built into the network by `load`.
pub fn load_component_dir<C, M>(
    dir: &std::path::Path,
    device: &Device,
    parse: impl FnOnce(&str) -> Result<C>,
    load: impl FnOnce(&C, &mut crate::weights::WeightLoader) -> Result<M>,
) -> Result<M> {
    let path = dir.join("config.json");
    let config = parse(&std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?)?;
    let mut source = SafetensorsSource::from_dir(dir)?;
    load(&config, &mut crate::weights::WeightLoader::new(&mut source, device))
}
