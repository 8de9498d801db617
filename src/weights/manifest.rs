//! `manifest.json`: what a converted model holds and where every byte of it lives.
//!
//! A model is a manifest plus shards (files of about 32 MiB named by their sha256). The manifest
//! carries the components' raw diffusers/transformers configs, the scheduler defaults, the tokenizer
//! variant, and a table of tensors (component, diffusers name, shape, storage dtype, shard, byte
//! range, quantization scales). [`Manifest::parse`] validates everything that can be checked
//! without the shard bytes, with overflow-safe arithmetic, so a hostile or damaged file gives a
//! typed error naming the tensor or shard — never a panic, never a huge allocation. docs/FORMAT.md
//! describes the format.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `format` field of every manifest.
pub const FORMAT: &str = "websd-weights";
/// The manifest version this code reads and writes.
pub const VERSION: u32 = 1;
/// Elements of one q4 block (along a row, i.e. the flattened input dimensions).
pub const Q4_BLOCK: usize = 32;
/// No shard may be larger than this (a tensor larger than a shard gets one of its own; SD's
/// largest tensor is 76 MB in f16, WebGPU's largest buffer 256 MiB).
pub const MAX_SHARD_BYTES: u64 = 1 << 30;
/// No tensor may have more elements than this.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;
/// No manifest may list more tensors or shards than this.
pub const MAX_ENTRIES: usize = 1 << 20;
/// No manifest may be larger than this: SD 1.5's is about 0.3 MB, SDXL's under 1 MB. Checked
/// before parsing, so that a manifest of a million tensors costs nothing (the page's store checks
/// it before reading the download, from `web::max_manifest_bytes`).
pub const MAX_MANIFEST_BYTES: usize = 32 << 20;

/// What is wrong with a manifest or a shard, naming the tensor or shard.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WeightsError {
    #[error("manifest.json is not a valid manifest: {0}")]
    Malformed(String),
    #[error("manifest format {found:?} is not {FORMAT:?}")]
    WrongFormat { found: String },
    #[error("manifest version {found} is not supported (this build reads version {VERSION}); convert the model again")]
    UnsupportedVersion { found: u64 },
    #[error("tensor `{tensor}` has unknown storage dtype {dtype:?} (expected f32, f16, q8 or q4)")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor `{tensor}` appears twice in the manifest")]
    DuplicateTensor { tensor: String },
    #[error("tensor `{tensor}` has an invalid shape {shape:?}: {reason}")]
    BadShape { tensor: String, shape: Vec<u64>, reason: String },
    #[error("tensor `{tensor}` refers to shard {shard}, but the manifest lists {count} shard(s)")]
    NoSuchShard { tensor: String, shard: u64, count: usize },
    #[error("tensor `{tensor}`: {what} bytes {offset}..+{length} lie outside shard {shard} of {shard_size} bytes")]
    OutOfShard { tensor: String, what: &'static str, shard: u64, offset: u64, length: u64, shard_size: u64 },
    #[error("tensor `{tensor}`: {what} length is {found} bytes, its shape and dtype need {expected}")]
    LengthMismatch { tensor: String, what: &'static str, expected: u64, found: u64 },
    #[error("tensor `{tensor}`: invalid quantization parameters: {reason}")]
    BadQuant { tensor: String, reason: String },
    #[error("shard {shard} ({file}): {reason}")]
    BadShardEntry { shard: usize, file: String, reason: String },
    #[error("shard {shard} ({file}) is {found} bytes, the manifest says {expected}: the download is truncated or wrong")]
    ShardSize { shard: usize, file: String, expected: u64, found: u64 },
    #[error("shard {shard} ({file}) has sha256 {found}, the manifest says {expected}: the download is corrupted")]
    ShardHash { shard: usize, file: String, expected: String, found: String },
    #[error("shard {shard} ({file}) is not available")]
    ShardUnavailable { shard: usize, file: String },
    #[error("tensor `{tensor}` is not in component `{component}` of the manifest")]
    MissingTensor { component: String, tensor: String },
    #[error("the manifest has no component `{0}`")]
    MissingComponent(String),
}

/// How a tensor's values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageDtype {
    F32,
    F16,
    /// int8 per output row (dim 0), symmetric, one f16 scale per row.
    Q8,
    /// 4-bit per block of [`Q4_BLOCK`] along a row, one f16 scale (and optionally an f16 min) per block.
    Q4,
}

impl StorageDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8 => "q8",
            Self::Q4 => "q4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "f32" => Self::F32,
            "f16" => Self::F16,
            "q8" => Self::Q8,
            "q4" => Self::Q4,
            _ => return None,
        })
    }
}

impl Serialize for StorageDtype {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A byte range inside the tensor's shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub offset: u64,
    pub length: u64,
}

/// Where a quantized tensor's parameters live (in the same shard as its data).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuantParams {
    /// Elements that share one scale: the row length for q8, [`Q4_BLOCK`] for q4.
    pub block: u64,
    /// f16 scales, one per block, in row-major block order.
    pub scales: ByteRange,
    /// f16 minimums (q4 with offset only): value = q·scale + min instead of (q − 8)·scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mins: Option<ByteRange>,
}

/// One tensor of the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorEntry {
    pub component: String,
    /// The diffusers/transformers name, without the component prefix (`conv_in.weight`).
    pub name: String,
    pub shape: Vec<u64>,
    pub dtype: StorageDtype,
    pub shard: u64,
    pub offset: u64,
    pub length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quant: Option<QuantParams>,
}

impl TensorEntry {
    /// Elements (validated manifests only: the product cannot overflow there).
    pub fn numel(&self) -> usize {
        self.shape.iter().product::<u64>() as usize
    }

    /// Rows (dim 0) and row length (the other dims flattened) as quantization sees them.
    pub fn rows_cols(&self) -> (usize, usize) {
        let rows = self.shape.first().copied().unwrap_or(1) as usize;
        let cols = self.shape.iter().skip(1).product::<u64>() as usize;
        (rows, cols)
    }

    /// The bytes a tensor's data and parameters take in its shard.
    pub fn stored_bytes(&self) -> u64 {
        let q = self.quant.as_ref().map(|q| q.scales.length + q.mins.map(|m| m.length).unwrap_or(0)).unwrap_or(0);
        self.length + q
    }
}

/// One shard file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// `<sha256 hex>.bin`
    pub file: String,
    pub size: u64,
    /// Lowercase hex sha256 of the file's bytes.
    pub sha256: String,
}

/// Which CLIP tokenizer the text encoder was trained with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// `clip-sd1` (pads with `<|endoftext|>`, 49407) or `clip-sd2` (OpenCLIP, pads with `!`, 0).
    pub variant: String,
    pub pad_token_id: u32,
}

/// A validated manifest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The raw config.json of every component (`unet`, `text_encoder`, `vae`, `taesd`).
    pub components: BTreeMap<String, serde_json::Value>,
    /// The raw scheduler_config.json.
    pub scheduler: serde_json::Value,
    pub tokenizer: TokenizerInfo,
    /// SDXL's second tokenizer (the one `text_encoder_2` pairs with); absent for SD 1.x/2.x.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer_2: Option<TokenizerInfo>,
    /// SDXL (model_index.json): a negative prompt left out conditions on zeros, not on the
    /// encoded empty text. Written only for SDXL; absent means diffusers' default, true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub force_zeros_for_empty_prompt: bool,
    pub tensors: Vec<TensorEntry>,
    pub shards: Vec<ShardEntry>,
    /// Settings the model's maker suggests over what its configs imply (optional).
    #[serde(default, skip_serializing_if = "crate::suggested::Hints::is_empty")]
    pub suggested: crate::suggested::Hints,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

// The wire form: dtype and numbers read loosely, then checked into a `Manifest`.
#[derive(Deserialize)]
struct RawManifest {
    format: String,
    version: u64,
    name: String,
    components: BTreeMap<String, serde_json::Value>,
    scheduler: serde_json::Value,
    tokenizer: TokenizerInfo,
    #[serde(default)]
    tokenizer_2: Option<TokenizerInfo>,
    #[serde(default = "yes")]
    force_zeros_for_empty_prompt: bool,
    tensors: Vec<RawTensor>,
    shards: Vec<ShardEntry>,
    #[serde(default)]
    suggested: crate::suggested::Hints,
}

#[derive(Deserialize)]
struct RawTensor {
    component: String,
    name: String,
    shape: Vec<u64>,
    dtype: String,
    shard: u64,
    offset: u64,
    length: u64,
    #[serde(default)]
    quant: Option<QuantParams>,
}

impl Manifest {
    /// Parses and validates manifest.json bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, WeightsError> {
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(WeightsError::Malformed(format!(
                "it is {:.1} MB, more than the {} MiB a manifest may be (a real model's is under 1 MB)",
                bytes.len() as f64 / 1e6,
                MAX_MANIFEST_BYTES >> 20
            )));
        }
        // The version is checked first so that a future format gives a clear message rather than a
        // field error.
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| WeightsError::Malformed(e.to_string()))?;
        if let Some(version) = value.get("version").and_then(serde_json::Value::as_u64)
            && version != VERSION as u64
        {
            return Err(WeightsError::UnsupportedVersion { found: version });
        }
        let raw: RawManifest = serde_json::from_value(value).map_err(|e| WeightsError::Malformed(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(WeightsError::WrongFormat { found: raw.format });
        }
        if raw.version != VERSION as u64 {
            return Err(WeightsError::UnsupportedVersion { found: raw.version });
        }
        if raw.tensors.len() > MAX_ENTRIES || raw.shards.len() > MAX_ENTRIES {
            return Err(WeightsError::Malformed(format!("{} tensors and {} shards: more than {MAX_ENTRIES}", raw.tensors.len(), raw.shards.len())));
        }
        let tensors = raw
            .tensors
            .into_iter()
            .map(|t| {
                let dtype = StorageDtype::parse(&t.dtype).ok_or_else(|| WeightsError::UnknownDtype { tensor: full_name(&t.component, &t.name), dtype: t.dtype.clone() })?;
                Ok(TensorEntry { component: t.component, name: t.name, shape: t.shape, dtype, shard: t.shard, offset: t.offset, length: t.length, quant: t.quant })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let manifest = Manifest {
            format: raw.format,
            version: VERSION,
            name: raw.name,
            components: raw.components,
            scheduler: raw.scheduler,
            tokenizer: raw.tokenizer,
            tokenizer_2: raw.tokenizer_2,
            force_zeros_for_empty_prompt: raw.force_zeros_for_empty_prompt,
            tensors,
            shards: raw.shards,
            suggested: raw.suggested,
        };
        manifest.suggested.check().map_err(WeightsError::Malformed)?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serializes")
    }

    /// Every check that needs no shard bytes.
    pub fn validate(&self) -> Result<(), WeightsError> {
        for (i, shard) in self.shards.iter().enumerate() {
            let bad = |reason: String| WeightsError::BadShardEntry { shard: i, file: shard.file.clone(), reason };
            let hex_ok = shard.sha256.len() == 64 && shard.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex_ok {
                return Err(bad("sha256 must be 64 lowercase hex digits".into()));
            }
            if shard.file != format!("{}.bin", shard.sha256) {
                return Err(bad("the file name must be the sha256 followed by .bin".into()));
            }
            if shard.size > MAX_SHARD_BYTES {
                return Err(bad(format!("size {} is over the limit of {MAX_SHARD_BYTES} bytes", shard.size)));
            }
        }
        let mut seen = HashSet::new();
        for t in &self.tensors {
            let tensor = full_name(&t.component, &t.name);
            if !seen.insert((t.component.as_str(), t.name.as_str())) {
                return Err(WeightsError::DuplicateTensor { tensor });
            }
            if !self.components.contains_key(&t.component) {
                return Err(WeightsError::MissingComponent(t.component.clone()));
            }
            self.validate_tensor(t, &tensor)?;
        }
        Ok(())
    }

    fn validate_tensor(&self, t: &TensorEntry, tensor: &str) -> Result<(), WeightsError> {
        let bad_shape = |reason: &str| WeightsError::BadShape { tensor: tensor.to_string(), shape: t.shape.clone(), reason: reason.into() };
        if t.shape.is_empty() || t.shape.len() > 8 {
            return Err(bad_shape("rank must be 1 to 8"));
        }
        let numel = t.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad_shape("element count overflows"))?;
        if numel == 0 || numel > MAX_TENSOR_ELEMENTS {
            return Err(bad_shape("element count must be 1 to 2^32"));
        }
        let rows = t.shape[0];
        let cols = numel / rows;
        let shard = self.shards.get(t.shard as usize).filter(|_| t.shard < self.shards.len() as u64).ok_or_else(|| WeightsError::NoSuchShard {
            tensor: tensor.to_string(),
            shard: t.shard,
            count: self.shards.len(),
        })?;
        let in_shard = |what: &'static str, r: ByteRange| {
            let end = r.offset.checked_add(r.length);
            if end.is_none_or(|end| end > shard.size) {
                return Err(WeightsError::OutOfShard { tensor: tensor.to_string(), what, shard: t.shard, offset: r.offset, length: r.length, shard_size: shard.size });
            }
            Ok(())
        };
        let length = |what: &'static str, expected: u64, found: u64| {
            if expected != found {
                return Err(WeightsError::LengthMismatch { tensor: tensor.to_string(), what, expected, found });
            }
            Ok(())
        };
        in_shard("data", ByteRange { offset: t.offset, length: t.length })?;
        let bad_quant = |reason: String| WeightsError::BadQuant { tensor: tensor.to_string(), reason };
        match t.dtype {
            StorageDtype::F32 | StorageDtype::F16 => {
                if t.quant.is_some() {
                    return Err(bad_quant(format!("{} tensors have no quantization parameters", t.dtype.as_str())));
                }
                let width = if t.dtype == StorageDtype::F32 { 4 } else { 2 };
                length("data", numel * width, t.length)?;
            }
            StorageDtype::Q8 | StorageDtype::Q4 => {
                let q = t.quant.as_ref().ok_or_else(|| bad_quant("quantized tensor without quantization parameters".into()))?;
                let (blocks, data_len) = if t.dtype == StorageDtype::Q8 {
                    if q.block != cols {
                        return Err(bad_quant(format!("q8 block must be the row length {cols}, found {}", q.block)));
                    }
                    if q.mins.is_some() {
                        return Err(bad_quant("q8 is symmetric: no mins".into()));
                    }
                    (rows, numel)
                } else {
                    if q.block != Q4_BLOCK as u64 || !cols.is_multiple_of(Q4_BLOCK as u64) {
                        return Err(bad_quant(format!("q4 needs block {Q4_BLOCK} dividing the row length {cols}, found block {}", q.block)));
                    }
                    (numel / Q4_BLOCK as u64, numel / 2)
                };
                length("data", data_len, t.length)?;
                length("scales", blocks * 2, q.scales.length)?;
                in_shard("scales", q.scales)?;
                if let Some(mins) = q.mins {
                    length("mins", blocks * 2, mins.length)?;
                    in_shard("mins", mins)?;
                }
            }
        }
        Ok(())
    }

    /// The tensors of one component.
    pub fn component_tensors<'a>(&'a self, component: &'a str) -> impl Iterator<Item = &'a TensorEntry> + 'a {
        self.tensors.iter().filter(move |t| t.component == component)
    }

    /// The shards holding any tensor of `component` (what a browser must download for it).
    pub fn component_shards(&self, component: &str) -> Vec<usize> {
        let mut shards: Vec<usize> = self.component_tensors(component).map(|t| t.shard as usize).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }
}

/// `component/name`, how errors name a tensor.
pub fn full_name(component: &str, name: &str) -> String {
    format!("{component}/{name}")
}
