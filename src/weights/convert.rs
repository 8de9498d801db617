//! The converter: a diffusers folder or a single-file LDM/A1111 `.safetensors` checkpoint →
//! `manifest.json` + shards of about 32 MiB named by their sha256 (docs/FORMAT.md). The same code
//! runs in the CLI (`convert`, on files) and in the page (src/web/import.rs, on the user's `File`s,
//! into IndexedDB), through [`ConvertIo`].
//!
//! It streams: headers and configs are read and checked first, then one source tensor at a time;
//! beyond it only the shard being filled and the tensor being converted are held.

use std::collections::BTreeMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use safetensors::Dtype;
use serde_json::Value;

use super::manifest::{ByteRange, FORMAT, Manifest, Q4_BLOCK, QuantParams, ShardEntry, StorageDtype, TensorEntry, TokenizerInfo, VERSION};
use super::quant::{self, Matrix};
use super::shards::sha256_hex;
use crate::error::{Error, Result};

/// Target shard size; a tensor is never split, one larger than this gets a shard of its own.
pub const SHARD_BYTES: usize = 32 << 20;

/// What to store the weights as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quant {
    F16,
    Q8,
    Q4,
}

impl Quant {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(Self::F16),
            "q8" => Ok(Self::Q8),
            "q4" => Ok(Self::Q4),
            _ => Err(Error::InvalidRequest(format!("unknown quantization {s:?}: use f16, q8 or q4"))),
        }
    }
}

/// What the VAE and TAESD are stored as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeStorage {
    F16,
    F32,
    Q8,
}

impl VaeStorage {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(Self::F16),
            "f32" => Ok(Self::F32),
            "q8" => Ok(Self::Q8),
            _ => Err(Error::InvalidRequest(format!("unknown VAE storage {s:?}: use f16, f32 or q8"))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The UNet's storage (and the text encoder's unless `text_encoder_quant` is set).
    pub quant: Quant,
    pub text_encoder_quant: Option<Quant>,
    /// The VAE's and TAESD's storage: f16 (default), f32, or q8 (halves the VAE decoder, 99 → 50
    /// MB for SD; what brings SD 1.5 under 0.65 GB with a q4 UNet and text encoder).
    pub vae: VaeStorage,
    /// A diffusers AutoencoderTiny folder to include as component `taesd`.
    pub taesd: Option<PathBuf>,
    pub name: Option<String>,
    /// Tensors with fewer elements stay f16 (they cost little and quantize worst).
    pub min_quant_elements: usize,
    /// q4 with an f16 min per block (value = q·scale + min) instead of symmetric.
    pub q4_min: bool,
    /// Configs for a single-file checkpoint from this diffusers folder instead of the built-in
    /// SD 1.5 / SD 2.1 ones (non-standard sizes, fixtures, v-prediction choices).
    pub configs: Option<PathBuf>,
    pub shard_bytes: usize,
    /// Steps and guidance the configs do not imply (SD-Turbo: 1 step, guidance 0).
    pub suggested: crate::suggested::Hints,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            quant: Quant::F16,
            text_encoder_quant: None,
            vae: VaeStorage::F16,
            taesd: None,
            name: None,
            min_quant_elements: 16384,
            q4_min: false,
            configs: None,
            shard_bytes: SHARD_BYTES,
            suggested: Default::default(),
        }
    }
}

// ------------------------------------------------------------------ inputs

/// One file a conversion may read: its path (relative, `/`-separated; for display and to find a
/// diffusers folder's parts) and its size.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct InputFile {
    pub path: String,
    pub size: u64,
}

/// Where a conversion reads from and writes to. The CLI's is the file system (`convert` below);
/// the page's is the user's `File`s and IndexedDB (src/web/import.rs). Only one source tensor, the
/// shard being filled and the tensor being converted are held at a time, so a 4 GB checkpoint
/// never sits whole in memory.
#[allow(async_fn_in_trait)] // used single-threaded (the browser) or blocked on (the CLI)
pub trait ConvertIo {
    /// Bytes `start..end` of input file `file`.
    async fn read(&mut self, file: usize, start: u64, end: u64) -> Result<Vec<u8>>;
    /// Called once every input is checked and before any shard is written: the shards of model
    /// `name` will take `bytes` in all. May refuse (not enough storage): then nothing was written.
    async fn begin(&mut self, bytes: u64, name: &str) -> Result<()>;
    /// A finished shard (its name, size and sha256 in `shard`).
    async fn put_shard(&mut self, shard: &ShardEntry, bytes: Vec<u8>) -> Result<()>;
    /// After each source tensor: `done` of `total` source bytes read. `Err(Cancelled)` stops.
    async fn progress(&mut self, done: u64, total: u64) -> Result<()>;
}

/// A diffusers-layout folder among the input files: path inside the folder → file index.
#[derive(Clone, Debug, Default)]
pub struct Folder {
    pub name: String,
    files: BTreeMap<String, usize>,
}

impl Folder {
    /// The folder of `paths` (index, path): a first path component that all of them share (a
    /// browser's folder picker gives `folder/unet/config.json`) is the folder's name, not part of
    /// the paths inside it.
    pub fn from_paths(name: &str, paths: impl IntoIterator<Item = (usize, String)>) -> Self {
        let paths: Vec<(usize, String)> = paths.into_iter().map(|(i, p)| (i, p.replace('\\', "/"))).collect();
        let first = |p: &str| p.split_once('/').map(|(a, _)| a.to_string());
        let shared = paths.first().and_then(|(_, p)| first(p)).filter(|f| paths.iter().all(|(_, p)| first(p).as_deref() == Some(f.as_str())));
        let files = paths.into_iter().map(|(i, p)| (shared.as_ref().map_or(p.clone(), |f| p[f.len() + 1..].to_string()), i)).collect();
        Self { name: shared.unwrap_or_else(|| name.to_string()), files }
    }

    pub fn get(&self, path: &str) -> Option<usize> {
        self.files.get(path).copied()
    }

    /// The weight files of component folder `component` (`unet`, …, or `""` for the folder itself).
    fn model_files(&self, component: &str) -> Result<Vec<usize>> {
        let prefix = if component.is_empty() { String::new() } else { format!("{component}/") };
        let names = self.files.keys().filter_map(|p| p.strip_prefix(&prefix)).filter(|n| !n.contains('/')).map(String::from);
        let picked = super::safetensors::pick_model_files(names);
        if picked.is_empty() {
            return Err(Error::Other(format!("no model .safetensors file in {}/{component}", self.name)));
        }
        Ok(picked.iter().map(|n| self.files[&format!("{prefix}{n}")]).collect())
    }
}

/// What a conversion reads.
pub struct Source {
    pub files: Vec<InputFile>,
    pub model: ModelSource,
    /// A diffusers AutoencoderTiny folder to include as component `taesd`.
    pub taesd: Option<Folder>,
}

pub enum ModelSource {
    /// A diffusers pipeline folder (text_encoder/, unet/, vae/, scheduler/, tokenizer/).
    Diffusers(Folder),
    /// A single-file LDM/A1111 checkpoint, with a diffusers folder whose configs to use instead of
    /// the built-in SD 1.5 / SD 2.1 ones.
    SingleFile { file: usize, configs: Option<Folder> },
}

/// The largest config or tokenizer JSON file read.
const MAX_JSON_BYTES: u64 = 16 << 20;

async fn read_json(io: &mut impl ConvertIo, files: &[InputFile], file: usize) -> Result<Value> {
    let f = &files[file];
    if f.size > MAX_JSON_BYTES {
        return Err(Error::Other(format!("{}: {} bytes is too large for a config file", f.path, f.size)));
    }
    let bytes = io.read(file, 0, f.size).await?;
    let text = String::from_utf8(bytes).map_err(|_| Error::Other(format!("{} is not UTF-8 text", f.path)))?;
    crate::config_json::parse_value(&text, &f.path)
}

async fn folder_json(io: &mut impl ConvertIo, files: &[InputFile], folder: &Folder, path: &str) -> Result<Value> {
    let file = folder.get(path).ok_or_else(|| Error::Other(format!("{}/{path} is missing", folder.name)))?;
    read_json(io, files, file).await
}

/// A diffusers folder's text_encoder, unet and vae configs (and SDXL's text_encoder_2), and its
/// scheduler config.
async fn folder_configs(io: &mut impl ConvertIo, files: &[InputFile], folder: &Folder) -> Result<(BTreeMap<String, Value>, Value)> {
    let mut components = BTreeMap::new();
    for c in ["text_encoder", "unet", "vae"] {
        components.insert(c.to_string(), folder_json(io, files, folder, &format!("{c}/config.json")).await?);
    }
    if folder.get("text_encoder_2/config.json").is_some() {
        components.insert("text_encoder_2".to_string(), folder_json(io, files, folder, "text_encoder_2/config.json").await?);
    }
    Ok((components, folder_json(io, files, folder, "scheduler/scheduler_config.json").await?))
}

// ------------------------------------------------------------------ safetensors headers

/// A safetensors file's tensor table (names, dtypes, shapes, byte ranges in the file); the tensors
/// themselves are read one at a time when they are converted.
pub struct SourceFile {
    what: String,
    /// The file's index among the inputs.
    pub file: usize,
    tensors: BTreeMap<String, (Dtype, Vec<usize>, u64, u64)>,
}

/// The largest safetensors header (the safetensors crate's own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

impl SourceFile {
    /// Reads input `file`'s header (its first 8 bytes say how long the header is), checking every
    /// tensor's bytes lie inside the file: a cut download fails here, before anything is written.
    pub async fn read(io: &mut impl ConvertIo, files: &[InputFile], file: usize) -> Result<Self> {
        let InputFile { path, size } = &files[file];
        let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
        if matches!(extension.as_str(), "ckpt" | "pt" | "pth" | "bin") {
            return Err(pickle_refused(path));
        }
        let bad = |message: String| Error::Safetensors { what: path.clone(), message };
        let head = io.read(file, 0, (*size).min(8)).await?;
        if head.starts_with(b"PK\x03\x04") || head.first() == Some(&0x80) {
            return Err(pickle_refused(path));
        }
        let Ok(head) = <[u8; 8]>::try_from(head.as_slice()) else { return Err(bad(format!("{size} bytes is too short for a safetensors file"))) };
        let n = u64::from_le_bytes(head);
        if n > MAX_HEADER_BYTES {
            return Err(bad(format!("its header length {n} is not plausible: not a safetensors file")));
        }
        if 8 + n > *size {
            return Err(bad(format!("the header needs {} bytes but the file has {size}: the file is cut short", 8 + n)));
        }
        let header = io.read(file, 8, 8 + n).await?;
        Self::from_header(path, file, &header, *size)
    }

    /// Parses a header (the JSON after the 8-byte length) of a file of `size` bytes.
    pub fn from_header(what: &str, file: usize, header: &[u8], size: u64) -> Result<Self> {
        let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
        let meta: safetensors::tensor::Metadata = serde_json::from_slice(header).map_err(|e| bad(format!("bad header: {e}")))?;
        let start = 8 + header.len() as u64;
        let end = start + meta.data_len() as u64;
        if end > size {
            return Err(bad(format!("its tensors need {end} bytes but the file has {size}: the file is cut short (an interrupted download?)")));
        }
        let tensors = meta.tensors().into_iter().map(|(name, info)| {
            let (a, b) = info.data_offsets;
            (name, (info.dtype, info.shape.clone(), start + a as u64, start + b as u64))
        });
        Ok(Self { what: what.to_string(), file, tensors: tensors.collect() })
    }

    /// Parses the header of a whole file held in memory (tests, fuzzing).
    pub fn parse(what: &str, bytes: &[u8]) -> Result<Self> {
        let bad = |message: &str| Error::Safetensors { what: what.to_string(), message: message.to_string() };
        let n = bytes.get(..8).map(|h| u64::from_le_bytes(h.try_into().unwrap())).ok_or_else(|| bad("too short"))?;
        let header = usize::try_from(n).ok().and_then(|n| bytes.get(8..n.checked_add(8)?)).ok_or_else(|| bad("the header runs past the end"))?;
        Self::from_header(what, 0, header, bytes.len() as u64)
    }

    /// Strips `prefix` from every name when every name has it (checkpoints converted from a
    /// training `{"state_dict": …}` pickle keep that level as a `state_dict.` prefix); true if it did.
    pub fn unwrap_prefix(&mut self, prefix: &str) -> bool {
        if self.tensors.is_empty() || !self.tensors.keys().all(|n| n.starts_with(prefix)) {
            return false;
        }
        self.tensors = std::mem::take(&mut self.tensors).into_iter().map(|(n, t)| (n[prefix.len()..].to_string(), t)).collect();
        true
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.1.as_slice())
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    /// Where tensor `name`'s bytes lie in the file.
    pub fn range(&self, name: &str) -> Result<(u64, u64)> {
        self.tensors.get(name).map(|t| (t.2, t.3)).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }

    fn is_float(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|t| matches!(t.0, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64))
    }

    /// Tensor `name`'s `bytes` (read from its `range`) as f32 values.
    pub fn decode_f32(&self, name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
        let (dtype, _, a, b) = self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        if bytes.len() as u64 != b - a {
            return Err(Error::Safetensors { what: self.what.clone(), message: format!("tensor `{name}`: read {} bytes, expected {}", bytes.len(), b - a) });
        }
        Ok(match dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::F64 => bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            other => {
                return Err(Error::UnsupportedDtype { name: format!("{name} in {}", self.what), dtype: format!("{other:?}") });
            }
        })
    }
}

fn pickle_refused(path: &str) -> Error {
    Error::Other(format!(
        "{path}: pickled PyTorch checkpoints (.ckpt, .pt, .bin) are refused (unpickling can run arbitrary code); convert it to \
         .safetensors first, e.g. with diffusers or the safetensors 'convert' space"
    ))
}

// ------------------------------------------------------------------ plan

/// How a diffusers tensor is made from a source tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Copy,
    /// A 1×1 conv kernel [o, i, 1, 1] (or [o, i, 1]) as a linear weight [o, i].
    Squeeze,
    /// Rows `part·n/3 .. (part+1)·n/3` of a fused q/k/v projection (OpenCLIP's in_proj).
    Third(usize),
    /// A matrix [a, b] as [b, a] (OpenCLIP's `text_projection`, applied as `x @ P`).
    Transpose,
}

/// One tensor to write: its component and diffusers name, where it comes from.
#[derive(Clone, Debug)]
pub struct Item {
    pub component: String,
    pub name: String,
    pub source: String,
    pub op: Op,
}

impl Item {
    fn copy(component: &str, name: impl Into<String>, source: impl Into<String>) -> Self {
        Self { component: component.into(), name: name.into(), source: source.into(), op: Op::Copy }
    }
}

fn result_shape(src: &[usize], op: &Op) -> Vec<usize> {
    match op {
        Op::Copy => src.to_vec(),
        Op::Squeeze => src[..2.min(src.len())].to_vec(),
        Op::Third(_) => {
            let mut s = src.to_vec();
            s[0] /= 3;
            s
        }
        Op::Transpose => src.iter().rev().copied().collect(),
    }
}

fn apply<'v>(values: &'v [f32], src: &[usize], op: &Op) -> std::borrow::Cow<'v, [f32]> {
    use std::borrow::Cow;
    match op {
        Op::Copy | Op::Squeeze => Cow::Borrowed(values),
        Op::Third(part) => {
            let row: usize = src.iter().skip(1).product();
            let rows = src[0] / 3;
            Cow::Borrowed(&values[part * rows * row..(part + 1) * rows * row])
        }
        Op::Transpose => {
            let (a, b) = (src[0], src.get(1).copied().unwrap_or(1));
            Cow::Owned((0..a * b).map(|k| values[(k % a) * b + k / a]).collect())
        }
    }
}

/// The storage for one tensor.
pub fn storage_for(component: &str, name: &str, shape: &[usize], opts: &ConvertOptions) -> StorageDtype {
    let quant = match component {
        "unet" => opts.quant,
        "text_encoder" | "text_encoder_2" => opts.text_encoder_quant.unwrap_or(opts.quant),
        _ => match opts.vae {
            VaeStorage::F32 => return StorageDtype::F32,
            VaeStorage::F16 => return StorageDtype::F16,
            VaeStorage::Q8 => Quant::Q8,
        },
    };
    let numel: usize = shape.iter().product();
    let cols: usize = shape.iter().skip(1).product();
    // Norms, biases (1-D), position and time embeddings, the first and last convs and small
    // tensors stay f16: they are a tiny share of the bytes and the most sensitive to error.
    let keep = shape.len() < 2
        || numel < opts.min_quant_elements
        || name.contains("norm")
        || name.contains("position_embedding")
        || name.starts_with("time_embedding")
        || name.starts_with("conv_in")
        || name.starts_with("conv_out");
    match quant {
        _ if keep => StorageDtype::F16,
        Quant::F16 => StorageDtype::F16,
        Quant::Q8 => StorageDtype::Q8,
        // Rows that do not split into whole blocks fall back to q8.
        Quant::Q4 if cols.is_multiple_of(Q4_BLOCK) => StorageDtype::Q4,
        Quant::Q4 => StorageDtype::Q8,
    }
}

/// Bytes a tensor of `shape` takes stored as `dtype` (data plus scales and mins).
pub fn stored_size(dtype: StorageDtype, shape: &[usize], q4_min: bool) -> u64 {
    let n: u64 = shape.iter().map(|&d| d as u64).product();
    let rows = shape.first().copied().unwrap_or(1) as u64;
    match dtype {
        StorageDtype::F32 => 4 * n,
        StorageDtype::F16 => 2 * n,
        StorageDtype::Q8 => n + 2 * rows,
        StorageDtype::Q4 => n / 2 + (n / Q4_BLOCK as u64) * if q4_min { 4 } else { 2 },
    }
}

// ------------------------------------------------------------------ conversion

/// Per (component, dtype): tensors, parameters, bytes; and the quantization error seen.
#[derive(Default, Debug, Clone)]
pub struct SizeRow {
    pub tensors: usize,
    pub params: u64,
    pub bytes: u64,
    /// Σ‖x − x̂‖² and Σ‖x‖² over the quantized tensors (relative error = sqrt of the ratio).
    pub err_num: f64,
    pub err_den: f64,
}

pub struct Converted {
    pub manifest: Manifest,
    pub sizes: BTreeMap<(String, String), SizeRow>,
    /// What the converter noticed on the way (a single file's kind, the tensors it ignored).
    pub notes: Vec<String>,
}

/// Tensors to write from one source file.
struct Part {
    file: SourceFile,
    items: Vec<Item>,
}

struct Job<'a, I: ConvertIo> {
    opts: &'a ConvertOptions,
    io: &'a mut I,
    /// The shard being filled, the group it holds, and the shards written.
    buf: Vec<u8>,
    group: String,
    shards: Vec<ShardEntry>,
    tensors: Vec<TensorEntry>,
    sizes: BTreeMap<(String, String), SizeRow>,
    /// Source bytes read of the total, for progress.
    read: u64,
    total: u64,
}

/// The storage of `item` taken from a source tensor of `src_shape`.
fn item_storage(item: &Item, src_shape: &[usize], opts: &ConvertOptions) -> (Vec<usize>, StorageDtype) {
    let shape = result_shape(src_shape, &item.op);
    let dtype = storage_for(&item.component, &item.name, &shape, opts);
    (shape, dtype)
}

impl<I: ConvertIo> Job<'_, I> {
    async fn write(&mut self, part: &Part) -> Result<()> {
        let file = &part.file;
        // Items made from the same source tensor (OpenCLIP's fused q/k/v) are next to each other:
        // each source tensor is read once.
        for run in part.items.chunk_by(|a, b| a.source == b.source) {
            let source = &run[0].source;
            let src_shape = file.shape(source).ok_or_else(|| Error::MissingTensor(source.clone()))?.to_vec();
            let (start, end) = file.range(source)?;
            let values = file.decode_f32(source, &self.io.read(file.file, start, end).await?)?;
            for item in run {
                if matches!(item.op, Op::Third(_)) && !src_shape[0].is_multiple_of(3) {
                    return Err(Error::Other(format!("{source}: fused q/k/v rows {} do not divide by 3", src_shape[0])));
                }
                if item.op == Op::Transpose && src_shape.len() != 2 {
                    return Err(Error::Other(format!("{source}: a projection to transpose must be a matrix, not {src_shape:?}")));
                }
                let (shape, dtype) = item_storage(item, &src_shape, self.opts);
                let values = apply(&values, &src_shape, &item.op);
                let values: &[f32] = &values;
                // The VAE encoder gets shards of its own: text-to-image never downloads it.
                let group = if item.component == "vae" && (item.name.starts_with("encoder.") || item.name.starts_with("quant_conv.")) {
                    "vae-encoder".to_string()
                } else {
                    item.component.clone()
                };
                self.add(&item.component, &item.name, &group, shape, values, dtype).await?;
            }
            self.read += end - start;
            self.io.progress(self.read, self.total).await?;
        }
        Ok(())
    }

    async fn add(&mut self, component: &str, name: &str, group: &str, shape: Vec<usize>, values: &[f32], dtype: StorageDtype) -> Result<()> {
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Other(format!("{component}/{name} holds NaN or infinite values")));
        }
        let rows = shape[0];
        let m = Matrix { rows, cols: values.len() / rows.max(1) };
        let row = self.sizes.entry((component.to_string(), dtype.as_str().to_string())).or_default();
        row.tensors += 1;
        row.params += values.len() as u64;
        let (data, scales, mins, block) = match dtype {
            StorageDtype::F32 => (values.iter().flat_map(|v| v.to_le_bytes()).collect(), None, None, 0),
            StorageDtype::F16 => (values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect::<Vec<u8>>(), None, None, 0),
            StorageDtype::Q8 | StorageDtype::Q4 => {
                let q4 = dtype == StorageDtype::Q4;
                let q = if q4 { quant::quantize_q4(values, m, self.opts.q4_min) } else { quant::quantize_q8(values, m) };
                let back = quant::dequantize_cpu(&q, m, q4);
                row.err_num += values.iter().zip(&back).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>();
                row.err_den += values.iter().map(|x| (*x as f64).powi(2)).sum::<f64>();
                let f16_bytes = |v: &[half::f16]| v.iter().flat_map(|s| s.to_le_bytes()).collect::<Vec<u8>>();
                let block = if q4 { Q4_BLOCK as u64 } else { m.cols as u64 };
                (q.data, Some(f16_bytes(&q.scales)), q.mins.as_deref().map(f16_bytes), block)
            }
        };
        let total = data.len() + scales.as_ref().map_or(0, Vec::len) + mins.as_ref().map_or(0, Vec::len);
        row.bytes += total as u64;
        // A tensor is never split: a new shard when the group changes or this one would overflow.
        if !self.buf.is_empty() && (group != self.group || self.buf.len() + total > self.opts.shard_bytes) {
            self.flush().await?;
        }
        self.group = group.to_string();
        let shard = self.shards.len() as u64;
        let d = self.push(&data);
        let quant = scales.map(|s| QuantParams { block, scales: self.push(&s), mins: mins.map(|m| self.push(&m)) });
        self.tensors.push(TensorEntry {
            component: component.to_string(),
            name: name.to_string(),
            shape: shape.iter().map(|&d| d as u64).collect(),
            dtype,
            shard,
            offset: d.offset,
            length: d.length,
            quant,
        });
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> ByteRange {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        ByteRange { offset, length: bytes.len() as u64 }
    }

    /// Writes the shard being filled, named by its sha256.
    async fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let sha256 = sha256_hex(&self.buf);
        let shard = ShardEntry { file: format!("{sha256}.bin"), size: self.buf.len() as u64, sha256 };
        self.io.put_shard(&shard, std::mem::take(&mut self.buf)).await?;
        self.shards.push(shard);
        Ok(())
    }
}

/// Parses each config as the loader will (before any shard is written): a model the loader would
/// refuse is refused here, with the loader's message.
fn check_configs(components: &BTreeMap<String, Value>, scheduler: &Value) -> Result<()> {
    use crate::model::{
        clip::ClipConfig,
        config::{UNetConfig, VaeConfig},
    };
    ClipConfig::from_json(&components["text_encoder"].to_string())?;
    let text_encoder_2 = match components.get("text_encoder_2") {
        Some(c) => Some(ClipConfig::from_json(&c.to_string())?),
        None => None,
    };
    crate::pipeline::check_pipeline(&UNetConfig::from_json(&components["unet"].to_string())?, text_encoder_2.as_ref())?;
    VaeConfig::from_json(&components["vae"].to_string())?;
    crate::scheduler::SchedulerConfig::from_json(&scheduler.to_string())?;
    Ok(())
}

/// The CLIP tokenizer a text encoder pairs with: from the pipeline's tokenizer
/// (special_tokens_map.json's pad token) when there is one, else from the activation (SD 1.x:
/// quick_gelu; SD 2.x's OpenCLIP: gelu).
fn tokenizer_info(special_tokens: Option<&Value>, text_config: &Value) -> TokenizerInfo {
    let pad =
        special_tokens.and_then(|m| m.get("pad_token").cloned()).and_then(|p| p.as_str().map(String::from).or_else(|| p.get("content").and_then(Value::as_str).map(String::from)));
    let sd2 = match pad.as_deref() {
        Some("!") => true,
        Some(_) => false,
        None => text_config.get("hidden_act").and_then(Value::as_str) == Some("gelu"),
    };
    if sd2 { TokenizerInfo { variant: "clip-sd2".into(), pad_token_id: 0 } } else { TokenizerInfo { variant: "clip-sd1".into(), pad_token_id: 49407 } }
}

/// Canonical text-encoder names: without the `text_model.` prefix (transformers 5's form).
fn text_name(name: &str) -> &str {
    name.strip_prefix("text_model.").unwrap_or(name)
}

/// The TAESD to include must parse and work on the model's latents: a TAESD of another family
/// (TAEF1/TAEF2: 16/32 channels) cannot preview an SD model. Checked before any shard is written.
fn check_taesd(folder: &str, config: &Value, components: &BTreeMap<String, Value>) -> Result<()> {
    let taesd = crate::model::taesd::TaesdConfig::from_json(&config.to_string())?;
    let vae_channels = components.get("vae").and_then(|v| v["latent_channels"].as_u64()).unwrap_or(4) as usize;
    if taesd.latent_channels != vae_channels {
        return Err(Error::UnsupportedConfig(format!(
            "the TAESD in {folder} works on {} latent channels and this model's VAE on {vae_channels}: use the TAESD made for this model family (madebyollin/taesd for SD 1.x/2.x)",
            taesd.latent_channels
        )));
    }
    Ok(())
}

/// The name a model gets by default: its folder's, or its file's without the extension.
fn default_name(path: &str) -> String {
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    file.strip_suffix(".safetensors").unwrap_or(file).to_string()
}

/// Converts `source` through `io`: reads and checks every header and config first, then tells
/// `io.begin` how many bytes the shards will take, then converts tensor by tensor. Returns the
/// manifest (not yet written anywhere: that is the caller's part).
pub async fn convert_source(source: &Source, opts: &ConvertOptions, io: &mut impl ConvertIo) -> Result<Converted> {
    opts.suggested.check().map_err(Error::Other)?;
    let files = &source.files;
    let mut notes = Vec::new();
    let mut parts = Vec::new();
    let (mut tokenizer_2, mut force_zeros_for_empty_prompt) = (None, true);
    let (mut components, scheduler, tokenizer, name) = match &source.model {
        ModelSource::Diffusers(folder) => {
            let (components, scheduler) = folder_configs(io, files, folder).await?;
            check_configs(&components, &scheduler)?;
            let sdxl = components.contains_key("text_encoder_2");
            for c in ["text_encoder", "text_encoder_2", "unet", "vae"] {
                if c == "text_encoder_2" && !sdxl {
                    continue;
                }
                let text = c.starts_with("text_encoder");
                for file in folder.model_files(c)? {
                    let file = SourceFile::read(io, files, file).await?;
                    // SDXL's second encoder keeps its `text_projection` (the pooled embedding's).
                    let items: Vec<Item> = file
                        .names()
                        .filter(|n| file.is_float(n))
                        .filter(|n| {
                            let position_ids = text && n.ends_with("position_ids");
                            !(position_ids || (c == "text_encoder" && n.starts_with("text_projection")))
                        })
                        .map(|n| Item::copy(c, if text { text_name(n) } else { n }, n.as_str()))
                        .collect();
                    parts.push(Part { file, items });
                }
            }
            let mut special_tokens = Vec::new();
            for path in ["tokenizer/special_tokens_map.json", "tokenizer_2/special_tokens_map.json"] {
                special_tokens.push(match folder.get(path) {
                    Some(file) => Some(read_json(io, files, file).await?),
                    None => None,
                });
            }
            let tokenizer = tokenizer_info(special_tokens[0].as_ref(), &components["text_encoder"]);
            if let Some(config) = components.get("text_encoder_2") {
                tokenizer_2 = Some(tokenizer_info(special_tokens[1].as_ref(), config));
                // diffusers' StableDiffusionXLPipeline default is true.
                if let Some(file) = folder.get("model_index.json") {
                    force_zeros_for_empty_prompt = read_json(io, files, file).await?["force_zeros_for_empty_prompt"].as_bool().unwrap_or(true);
                }
            }
            (components, scheduler, tokenizer, folder.name.clone())
        }
        ModelSource::SingleFile { file, configs } => {
            let mut file = SourceFile::read(io, files, *file).await?;
            if file.unwrap_prefix("state_dict.") {
                notes.push("single-file checkpoint: names under `state_dict.` (a training checkpoint's wrapper) read without it".into());
            }
            let configs = match configs {
                Some(folder) => {
                    let (components, scheduler) = folder_configs(io, files, folder).await?;
                    Some((components, scheduler, format!("configs from {}", folder.name)))
                }
                None => None,
            };
            let single = super::single_file::plan(&file, configs)?;
            notes.push(format!("single-file checkpoint: {} ({}); {} source tensors ignored", single.kind, single.config_origin, single.ignored));
            if single.ema > 0 {
                notes.push(format!("single-file checkpoint: {} EMA tensors (model_ema.*) ignored: the model's own weights are converted", single.ema));
            }
            check_configs(&single.configs, &single.scheduler)?;
            let tokenizer = tokenizer_info(None, &single.configs["text_encoder"]);
            // SDXL's tokenizers: the first pads with EOS, the second (OpenCLIP's) with `!`.
            tokenizer_2 = single.configs.get("text_encoder_2").map(|c| tokenizer_info(None, c));
            let name = default_name(&files[file.file].path);
            parts.push(Part { file, items: single.items });
            (single.configs, single.scheduler, tokenizer, name)
        }
    };
    if let Some(folder) = &source.taesd {
        let config = folder_json(io, files, folder, "config.json").await?;
        check_taesd(&folder.name, &config, &components)?;
        components.insert("taesd".into(), config);
        for file in folder.model_files("")? {
            let file = SourceFile::read(io, files, file).await?;
            let items: Vec<Item> = file.names().filter(|n| file.is_float(n)).map(|n| Item::copy("taesd", n.as_str(), n.as_str())).collect();
            parts.push(Part { file, items });
        }
    }

    // Everything is checked: say what the shards will take (the sizes are known from the shapes).
    let mut planned = 0u64;
    let mut total = 0u64;
    for part in &parts {
        for run in part.items.chunk_by(|a, b| a.source == b.source) {
            let src_shape = part.file.shape(&run[0].source).ok_or_else(|| Error::MissingTensor(run[0].source.clone()))?;
            let (start, end) = part.file.range(&run[0].source)?;
            total += end - start;
            for item in run {
                let (shape, dtype) = item_storage(item, src_shape, opts);
                planned += stored_size(dtype, &shape, opts.q4_min);
            }
        }
    }
    let name = opts.name.clone().unwrap_or(name);
    io.begin(planned, &name).await?;

    let mut job = Job { opts, io, buf: Vec::new(), group: String::new(), shards: Vec::new(), tensors: Vec::new(), sizes: BTreeMap::new(), read: 0, total };
    for part in &parts {
        job.write(part).await?;
    }
    job.flush().await?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        name,
        components,
        scheduler,
        tokenizer,
        tokenizer_2,
        force_zeros_for_empty_prompt,
        tensors: job.tensors,
        shards: job.shards,
        suggested: opts.suggested.clone(),
    };
    manifest.validate()?;
    Ok(Converted { manifest, sizes: job.sizes, notes })
}

/// The size table: per component and dtype, totals, and what text-to-image downloads.
pub fn size_table(c: &Converted) -> String {
    let mut s = format!("{:<14}{:<6}{:>8}{:>14}{:>12}{:>10}\n", "component", "dtype", "tensors", "params", "MB", "rel.err");
    let mut total = 0u64;
    for ((comp, dtype), r) in &c.sizes {
        let err = if r.err_den > 0.0 { format!("{:.2e}", (r.err_num / r.err_den).sqrt()) } else { "-".into() };
        s += &format!("{:<14}{:<6}{:>8}{:>14}{:>12.2}{:>10}\n", comp, dtype, r.tensors, r.params, r.bytes as f64 / 1e6, err);
        total += r.bytes;
    }
    let m = &c.manifest;
    let shard_bytes = |pred: &dyn Fn(&TensorEntry) -> bool| -> u64 {
        let mut shards: Vec<u64> = m.tensors.iter().filter(|t| pred(t)).map(|t| t.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        shards.iter().map(|&i| m.shards[i as usize].size).sum()
    };
    let all = shard_bytes(&|_| true);
    let txt2img = shard_bytes(&|t| t.component != "taesd" && !(t.component == "vae" && (t.name.starts_with("encoder.") || t.name.starts_with("quant_conv."))));
    s += &format!("tensor bytes {:.2} MB; {} shards, {:.2} MB in all\n", total as f64 / 1e6, m.shards.len(), all as f64 / 1e6);
    s += &format!("text-to-image download (text encoder, UNet, VAE decoder): {:.3} GB\n", txt2img as f64 / 1e9);
    s
}

// ------------------------------------------------------------------ the CLI's files

/// Reads input files from disk, a range at a time, and writes shards into a folder.
#[cfg(not(target_arch = "wasm32"))]
struct DiskIo {
    paths: Vec<PathBuf>,
    out: PathBuf,
    /// The input file last read, kept open: a checkpoint is read a tensor at a time.
    open: Option<(usize, std::fs::File)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl ConvertIo for DiskIo {
    async fn read(&mut self, file: usize, start: u64, end: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.paths[file];
        if self.open.as_ref().is_none_or(|(i, _)| *i != file) {
            self.open = Some((file, std::fs::File::open(path).map_err(|e| Error::io(path, e))?));
        }
        let f = &mut self.open.as_mut().expect("opened above").1;
        f.seek(SeekFrom::Start(start)).map_err(|e| Error::io(path, e))?;
        let mut bytes = vec![0; (end - start) as usize];
        f.read_exact(&mut bytes).map_err(|e| Error::io(path, e))?;
        Ok(bytes)
    }

    async fn begin(&mut self, _bytes: u64, _name: &str) -> Result<()> {
        std::fs::create_dir_all(&self.out).map_err(|e| Error::io(&self.out, e))
    }

    async fn put_shard(&mut self, shard: &ShardEntry, bytes: Vec<u8>) -> Result<()> {
        let path = self.out.join(&shard.file);
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))
    }

    async fn progress(&mut self, _done: u64, _total: u64) -> Result<()> {
        Ok(())
    }
}

/// The files of `dir` and of its subfolders one level down, as a [`Folder`] over `paths`.
#[cfg(not(target_arch = "wasm32"))]
fn disk_folder(dir: &Path, files: &mut Vec<InputFile>, paths: &mut Vec<PathBuf>) -> Result<Folder> {
    let mut found = Vec::new();
    let list = |d: &Path| -> Result<Vec<std::fs::DirEntry>> { Ok(std::fs::read_dir(d).map_err(|e| Error::io(d, e))?.filter_map(|e| e.ok()).collect()) };
    for entry in list(dir)? {
        let path = entry.path();
        if path.is_dir() {
            for inner in list(&path)? {
                if inner.path().is_file() {
                    found.push((format!("{}/{}", entry.file_name().to_string_lossy(), inner.file_name().to_string_lossy()), inner.path()));
                }
            }
        } else {
            found.push((entry.file_name().to_string_lossy().into_owned(), path));
        }
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| dir.display().to_string());
    let mut indexed = BTreeMap::new();
    for (rel, path) in found {
        let size = path.metadata().map_err(|e| Error::io(&path, e))?.len();
        indexed.insert(rel, files.len());
        files.push(InputFile { path: path.display().to_string(), size });
        paths.push(path);
    }
    Ok(Folder { name, files: indexed })
}

/// Converts `src` (a diffusers folder or a `.safetensors` single file) into `out`.
#[cfg(not(target_arch = "wasm32"))]
pub fn convert(src: &Path, out: &Path, opts: &ConvertOptions) -> Result<Converted> {
    let (mut files, mut paths) = (Vec::new(), Vec::new());
    let model = if src.is_dir() {
        ModelSource::Diffusers(disk_folder(src, &mut files, &mut paths)?)
    } else {
        let size = src.metadata().map_err(|e| Error::io(src, e))?.len();
        files.push(InputFile { path: src.display().to_string(), size });
        paths.push(src.to_path_buf());
        let configs = match &opts.configs {
            Some(dir) => Some(disk_folder(dir, &mut files, &mut paths)?),
            None => None,
        };
        ModelSource::SingleFile { file: 0, configs }
    };
    let taesd = match &opts.taesd {
        Some(dir) => Some(disk_folder(dir, &mut files, &mut paths)?),
        None => None,
    };
    let source = Source { files, model, taesd };
    let mut io = DiskIo { paths, out: out.to_path_buf(), open: None };
    let converted = pollster::block_on(convert_source(&source, opts, &mut io))?;
    let path = out.join("manifest.json");
    std::fs::write(&path, converted.manifest.to_json()).map_err(|e| Error::io(&path, e))?;
    Ok(converted)
}
