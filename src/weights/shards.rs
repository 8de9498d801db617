//! [`ManifestSource`]: a [`TensorSource`] over a manifest and its shards, for one component.
//!
//! Shard bytes come from a [`ShardStore`]: either handed in one at a time (the browser reads them
//! from IndexedDB) or fetched on demand by a callback (files on disk). Every shard's size and
//! sha256 are checked before any of its bytes are used.

use std::collections::HashMap;
use std::sync::Arc;

use burn::prelude::*;
use burn::tensor::{DType, FloatDType, TensorCreationOptions, TensorData};
use sha2::{Digest, Sha256};

use super::TensorSource;
use super::manifest::{Manifest, ShardEntry, StorageDtype, TensorEntry, WeightsError, full_name};
use super::quant::{self, Matrix};
use crate::error::{Error, Result};

/// Fetches the bytes of shard `index` (e.g. reads `<dir>/<sha256>.bin`).
pub type FetchShard = Box<dyn FnMut(usize, &ShardEntry) -> Result<Vec<u8>>>;

/// Verified shard bytes: handed in, or fetched on demand and kept up to `keep` at a time.
pub struct ShardStore {
    shards: Vec<ShardEntry>,
    loaded: HashMap<usize, Arc<[u8]>>,
    /// Load order of fetched shards, oldest first (only fetched ones are evicted).
    fetched: Vec<usize>,
    fetch: Option<FetchShard>,
    keep: usize,
}

/// Lowercase hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a shard's size and hash against its manifest entry.
pub fn verify_shard(index: usize, entry: &ShardEntry, bytes: &[u8]) -> Result<(), WeightsError> {
    if bytes.len() as u64 != entry.size {
        return Err(WeightsError::ShardSize { shard: index, file: entry.file.clone(), expected: entry.size, found: bytes.len() as u64 });
    }
    let found = sha256_hex(bytes);
    if found != entry.sha256 {
        return Err(WeightsError::ShardHash { shard: index, file: entry.file.clone(), expected: entry.sha256.clone(), found });
    }
    Ok(())
}

impl ShardStore {
    /// A store the caller fills with [`ShardStore::insert`].
    pub fn new(manifest: &Manifest) -> Self {
        Self { shards: manifest.shards.clone(), loaded: HashMap::new(), fetched: Vec::new(), fetch: None, keep: 2 }
    }

    /// A store that fetches shards when a tensor needs one, keeping the last `keep` fetched.
    pub fn with_fetch(manifest: &Manifest, keep: usize, fetch: FetchShard) -> Self {
        Self { fetch: Some(fetch), keep: keep.max(1), ..Self::new(manifest) }
    }

    /// Shards read from `dir/<file>` on demand.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_dir(manifest: &Manifest, dir: impl AsRef<std::path::Path>) -> Self {
        let dir = dir.as_ref().to_path_buf();
        Self::with_fetch(
            manifest,
            2,
            Box::new(move |_, entry| {
                let path = dir.join(&entry.file);
                std::fs::read(&path).map_err(|e| Error::io(&path, e))
            }),
        )
    }

    /// Adds shard `index` after checking its size and sha256.
    pub fn insert(&mut self, index: usize, bytes: impl Into<Arc<[u8]>>) -> Result<()> {
        let bytes = bytes.into();
        let entry = self.entry(index)?;
        verify_shard(index, entry, &bytes)?;
        self.loaded.insert(index, bytes);
        Ok(())
    }

    /// Drops shard `index` (the browser frees a component's shards once it is built).
    pub fn remove(&mut self, index: usize) {
        self.loaded.remove(&index);
        self.fetched.retain(|&i| i != index);
    }

    fn entry(&self, index: usize) -> Result<&ShardEntry> {
        self.shards.get(index).ok_or_else(|| WeightsError::ShardUnavailable { shard: index, file: format!("index {index} of {}", self.shards.len()) }.into())
    }

    /// The verified bytes of shard `index`.
    pub fn get(&mut self, index: usize) -> Result<Arc<[u8]>> {
        if let Some(bytes) = self.loaded.get(&index) {
            return Ok(bytes.clone());
        }
        let entry = self.entry(index)?.clone();
        let Some(fetch) = self.fetch.as_mut() else {
            return Err(WeightsError::ShardUnavailable { shard: index, file: entry.file }.into());
        };
        let bytes: Arc<[u8]> = fetch(index, &entry)?.into();
        verify_shard(index, &entry, &bytes)?;
        while self.fetched.len() >= self.keep {
            let old = self.fetched.remove(0);
            self.loaded.remove(&old);
        }
        self.fetched.push(index);
        self.loaded.insert(index, bytes.clone());
        Ok(bytes)
    }
}

/// The tensors of one component of a manifest, by their names without the component prefix.
pub struct ManifestSource {
    component: String,
    tensors: HashMap<String, TensorEntry>,
    store: ShardStore,
}

impl ManifestSource {
    /// The view of `component` (`unet`, `text_encoder`, `vae`, `taesd`).
    pub fn new(manifest: &Manifest, component: &str, store: ShardStore) -> Result<Self> {
        if !manifest.components.contains_key(component) {
            return Err(WeightsError::MissingComponent(component.to_string()).into());
        }
        let tensors = manifest.component_tensors(component).map(|t| (t.name.clone(), t.clone())).collect();
        Ok(Self { component: component.to_string(), tensors, store })
    }

    pub fn store_mut(&mut self) -> &mut ShardStore {
        &mut self.store
    }

    pub fn entry(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// Gives the shard store back (e.g. to drop its shards).
    pub fn into_store(self) -> ShardStore {
        self.store
    }
}

impl TensorSource for ManifestSource {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.shape.iter().map(|&d| d as usize).collect())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor<1>> {
        let rows = shape.first().copied().unwrap_or(1);
        self.load_part(name, shape, 0..rows, device)
    }

    fn load_rows(&mut self, name: &str, shape: &[usize], rows: std::ops::Range<usize>, device: &Device) -> Result<Tensor<1>> {
        self.load_part(name, shape, rows, device)
    }
}

impl ManifestSource {
    /// Rows `part` of tensor `name`: every format stores whole rows contiguously (q8 has one scale
    /// per row, q4's blocks of 32 lie within a row), so a row range is a byte range of each.
    fn load_part(&mut self, name: &str, shape: &[usize], part: std::ops::Range<usize>, device: &Device) -> Result<Tensor<1>> {
        let t = self.tensors.get(name).ok_or_else(|| WeightsError::MissingTensor { component: self.component.clone(), tensor: name.to_string() })?;
        let stored: Vec<usize> = t.shape.iter().map(|&d| d as usize).collect();
        if stored != shape {
            return Err(Error::ShapeMismatch { name: full_name(&t.component, name), expected: shape.to_vec(), found: stored });
        }
        let bytes = self.store.get(t.shard as usize)?;
        // Validation makes every range fit its shard; a store built for another manifest could
        // still hand in other bytes, so ranges are checked rather than trusted.
        let shard = t.shard;
        let tensor = full_name(&t.component, name);
        let range = |offset: u64, length: u64| -> Result<&[u8]> {
            let end = offset.checked_add(length).filter(|&e| e <= bytes.len() as u64);
            end.map(|e| &bytes[offset as usize..e as usize])
                .ok_or_else(|| WeightsError::OutOfShard { tensor: tensor.clone(), what: "data", shard, offset, length, shard_size: bytes.len() as u64 }.into())
        };
        let (rows, cols) = t.rows_cols();
        if part.start > part.end || part.end > rows {
            return Err(Error::Other(format!("rows {part:?} of `{tensor}` outside its {rows} rows")));
        }
        let m = Matrix { rows: part.len(), cols };
        let n = part.len() * cols;
        // Byte range of rows `part` in a region of `rows` equal-sized rows.
        let rows_of = |offset: u64, length: u64| -> Result<&[u8]> {
            let all = range(offset, length)?;
            let per_row = all.len() / rows.max(1);
            Ok(&all[part.start * per_row..part.end * per_row])
        };
        let data = rows_of(t.offset, t.length)?;
        Ok(match t.dtype {
            StorageDtype::F32 => {
                let v: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                Tensor::from_data(TensorData::new(v, [n]), device)
            }
            StorageDtype::F16 => {
                let v = quant::read_f16(data);
                if device.supports_dtype(DType::F16) {
                    // Upload half the bytes and widen on the device.
                    let opts = TensorCreationOptions::new(device.clone()).with_dtype(DType::F16);
                    Tensor::<1>::from_data(TensorData::new(v, [n]), opts).cast(FloatDType::F32)
                } else {
                    quant::f16_to_device(&v, device)
                }
            }
            StorageDtype::Q8 | StorageDtype::Q4 => {
                let q = t.quant.as_ref().expect("validated: quantized tensors have parameters");
                let scales = quant::read_f16(rows_of(q.scales.offset, q.scales.length)?);
                if t.dtype == StorageDtype::Q8 {
                    quant::dequantize_q8(data, &scales, m, device)
                } else {
                    let mins = match q.mins {
                        Some(r) => Some(quant::read_f16(rows_of(r.offset, r.length)?)),
                        None => None,
                    };
                    quant::dequantize_q4(data, &scales, mins.as_deref(), m, device)
                }
            }
        })
    }
}

impl From<WeightsError> for Error {
    fn from(e: WeightsError) -> Self {
        Error::Weights(e)
    }
}
