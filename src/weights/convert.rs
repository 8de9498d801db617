//! The converter (native only): a diffusers folder or a single-file LDM/A1111 `.safetensors`
//! checkpoint → `manifest.json` + shards of about 32 MiB named by their sha256 (docs/FORMAT.md).
//!
//! It streams: one source file is read at a time (a component's file, or the single file), and
//! beyond it only the shard being filled and the tensor being converted are held.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
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

// ------------------------------------------------------------------ source files

/// A safetensors file in memory with its header parsed.
pub struct SourceFile {
    what: String,
    bytes: Vec<u8>,
    tensors: BTreeMap<String, (Dtype, Vec<usize>, usize, usize)>,
}

impl SourceFile {
    /// Parses safetensors bytes (every offset is checked against the buffer by the safetensors crate).
    pub fn parse(what: &str, bytes: Vec<u8>) -> Result<Self> {
        let bad = |message: String| Error::Safetensors { what: what.to_string(), message };
        let (n, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
        let start = 8usize.checked_add(n).ok_or_else(|| bad("header length overflows".into()))?;
        let mut tensors = BTreeMap::new();
        for (name, info) in meta.tensors() {
            let (a, b) = info.data_offsets;
            let (a, b) = (start.checked_add(a), start.checked_add(b));
            match (a, b) {
                (Some(a), Some(b)) if a <= b && b <= bytes.len() => {
                    tensors.insert(name, (info.dtype, info.shape.clone(), a, b));
                }
                _ => return Err(bad(format!("tensor `{name}` lies outside the file"))),
            }
        }
        Ok(Self { what: what.to_string(), bytes, tensors })
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

    pub fn read(path: &Path) -> Result<Self> {
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "ckpt" | "pt" | "pth" | "bin")) {
            return Err(Error::Other(format!(
                "{}: pickled PyTorch checkpoints are refused (unpickling can run arbitrary code); convert it to \
                 .safetensors first, e.g. with diffusers or the safetensors 'convert' space",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&path.display().to_string(), bytes)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.1.as_slice())
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    fn is_float(&self, name: &str) -> bool {
        self.tensors.get(name).is_some_and(|t| matches!(t.0, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64))
    }

    /// Tensor `name` as f32 values.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        let (dtype, _, a, b) = self.tensors.get(name).ok_or_else(|| Error::MissingTensor(name.to_string()))?;
        let bytes = &self.bytes[*a..*b];
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

// ------------------------------------------------------------------ plan

/// How a diffusers tensor is made from a source tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Copy,
    /// A 1×1 conv kernel [o, i, 1, 1] (or [o, i, 1]) as a linear weight [o, i].
    Squeeze,
    /// Rows `part·n/3 .. (part+1)·n/3` of a fused q/k/v projection (OpenCLIP's in_proj).
    Third(usize),
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
    }
}

fn apply(values: Vec<f32>, src: &[usize], op: &Op) -> Vec<f32> {
    match op {
        Op::Copy | Op::Squeeze => values,
        Op::Third(part) => {
            let row: usize = src.iter().skip(1).product();
            let rows = src[0] / 3;
            values[part * rows * row..(part + 1) * rows * row].to_vec()
        }
    }
}

/// The storage for one tensor.
pub fn storage_for(component: &str, name: &str, shape: &[usize], opts: &ConvertOptions) -> StorageDtype {
    let quant = match component {
        "unet" => opts.quant,
        "text_encoder" => opts.text_encoder_quant.unwrap_or(opts.quant),
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

// ------------------------------------------------------------------ shard writer

/// Fills shards and writes each, named by its sha256, when full.
struct ShardWriter {
    dir: PathBuf,
    target: usize,
    buf: Vec<u8>,
    shards: Vec<ShardEntry>,
    group: String,
}

impl ShardWriter {
    /// Starts a tensor of `bytes` in `group` (a new shard when the group changes or it would
    /// overflow); returns (shard index, offset).
    fn place(&mut self, group: &str, bytes: usize) -> Result<(u64, u64)> {
        if !self.buf.is_empty() && (group != self.group || self.buf.len() + bytes > self.target) {
            self.flush()?;
        }
        self.group = group.to_string();
        Ok((self.shards.len() as u64, self.buf.len() as u64))
    }

    fn push(&mut self, bytes: &[u8]) -> ByteRange {
        let offset = self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        ByteRange { offset, length: bytes.len() as u64 }
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let sha256 = sha256_hex(&self.buf);
        let file = format!("{sha256}.bin");
        let path = self.dir.join(&file);
        std::fs::write(&path, &self.buf).map_err(|e| Error::io(&path, e))?;
        self.shards.push(ShardEntry { file, size: self.buf.len() as u64, sha256 });
        self.buf.clear();
        Ok(())
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
}

struct Job<'a> {
    opts: &'a ConvertOptions,
    writer: ShardWriter,
    tensors: Vec<TensorEntry>,
    sizes: BTreeMap<(String, String), SizeRow>,
}

impl Job<'_> {
    fn write(&mut self, file: &SourceFile, items: &[Item]) -> Result<()> {
        for item in items {
            let src_shape = file.shape(&item.source).ok_or_else(|| Error::MissingTensor(item.source.clone()))?.to_vec();
            let shape = result_shape(&src_shape, &item.op);
            if matches!(item.op, Op::Third(_)) && src_shape[0] % 3 != 0 {
                return Err(Error::Other(format!("{}: fused q/k/v rows {} do not divide by 3", item.source, src_shape[0])));
            }
            let values = apply(file.read_f32(&item.source)?, &src_shape, &item.op);
            let dtype = storage_for(&item.component, &item.name, &shape, self.opts);
            // The VAE encoder gets shards of its own: text-to-image never downloads it.
            let group = if item.component == "vae" && (item.name.starts_with("encoder.") || item.name.starts_with("quant_conv.")) {
                "vae-encoder".to_string()
            } else {
                item.component.clone()
            };
            self.add(&item.component, &item.name, &group, shape, &values, dtype)?;
        }
        Ok(())
    }

    fn add(&mut self, component: &str, name: &str, group: &str, shape: Vec<usize>, values: &[f32], dtype: StorageDtype) -> Result<()> {
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
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::Other(format!("{component}/{name} holds NaN or infinite values")));
        }
        let total = data.len() + scales.as_ref().map_or(0, Vec::len) + mins.as_ref().map_or(0, Vec::len);
        row.bytes += total as u64;
        let (shard, _) = self.writer.place(group, total)?;
        let d = self.writer.push(&data);
        let quant = scales.map(|s| QuantParams { block, scales: self.writer.push(&s), mins: mins.map(|m| self.writer.push(&m)) });
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
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    crate::config_json::parse_value(&text, &path.display().to_string())
}

/// Parses each config as the loader will (before any shard is written): a model the loader would
/// refuse is refused here, with the loader's message.
fn check_configs(components: &BTreeMap<String, Value>, scheduler: &Value) -> Result<()> {
    use crate::model::{
        clip::ClipConfig,
        config::{UNetConfig, VaeConfig},
    };
    ClipConfig::from_json(&components["text_encoder"].to_string())?;
    UNetConfig::from_json(&components["unet"].to_string())?;
    VaeConfig::from_json(&components["vae"].to_string())?;
    crate::scheduler::SchedulerConfig::from_json(&scheduler.to_string())?;
    Ok(())
}

/// The CLIP tokenizer a text encoder pairs with: from the pipeline's tokenizer folder when there
/// is one, else from the activation (SD 1.x: quick_gelu; SD 2.x's OpenCLIP: gelu).
fn tokenizer_info(root: Option<&Path>, text_config: &Value) -> TokenizerInfo {
    let pad = root
        .and_then(|r| read_json(&r.join("tokenizer/special_tokens_map.json")).ok())
        .and_then(|m| m.get("pad_token").cloned())
        .and_then(|p| p.as_str().map(String::from).or_else(|| p.get("content").and_then(Value::as_str).map(String::from)));
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
fn check_taesd(opts: &ConvertOptions, config: Option<&Value>, components: &BTreeMap<String, Value>) -> Result<()> {
    let (Some(dir), Some(config)) = (&opts.taesd, config) else { return Ok(()) };
    let taesd = crate::model::taesd::TaesdConfig::from_json(&config.to_string())?;
    let vae_channels = components.get("vae").and_then(|v| v["latent_channels"].as_u64()).unwrap_or(4) as usize;
    if taesd.latent_channels != vae_channels {
        return Err(Error::UnsupportedConfig(format!(
            "the TAESD in {} works on {} latent channels and this model's VAE on {vae_channels}: use the TAESD made for this model family (madebyollin/taesd for SD 1.x/2.x)",
            dir.display(),
            taesd.latent_channels
        )));
    }
    Ok(())
}

/// Converts `src` (a diffusers folder or a `.safetensors` single file) into `out`.
pub fn convert(src: &Path, out: &Path, opts: &ConvertOptions) -> Result<Converted> {
    opts.suggested.check().map_err(Error::Other)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut job = Job {
        opts,
        writer: ShardWriter { dir: out.to_path_buf(), target: opts.shard_bytes, buf: Vec::new(), shards: Vec::new(), group: String::new() },
        tensors: Vec::new(),
        sizes: BTreeMap::new(),
    };
    let taesd_config = match &opts.taesd {
        Some(dir) => Some(read_json(&dir.join("config.json"))?),
        None => None,
    };
    let mut components = BTreeMap::new();
    let (scheduler, tokenizer, default_name);
    if src.is_dir() {
        for c in ["text_encoder", "unet", "vae"] {
            components.insert(c.to_string(), read_json(&src.join(c).join("config.json"))?);
        }
        scheduler = read_json(&src.join("scheduler/scheduler_config.json"))?;
        check_configs(&components, &scheduler)?;
        check_taesd(opts, taesd_config.as_ref(), &components)?;
        for c in ["text_encoder", "unet", "vae"] {
            let dir = src.join(c);
            for path in super::safetensors::model_files(&dir)? {
                let file = SourceFile::read(&path)?;
                let items: Vec<Item> = file
                    .names()
                    .filter(|n| file.is_float(n))
                    .filter(|n| !(c == "text_encoder" && (n.ends_with("position_ids") || n.starts_with("text_projection"))))
                    .map(|n| Item::copy(c, if c == "text_encoder" { text_name(n) } else { n }, n.as_str()))
                    .collect();
                job.write(&file, &items)?;
            }
        }
        tokenizer = tokenizer_info(Some(src), &components["text_encoder"]);
        default_name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    } else {
        let mut file = SourceFile::read(src)?;
        if file.unwrap_prefix("state_dict.") {
            println!("single-file checkpoint: names under `state_dict.` (a training checkpoint's wrapper) read without it");
        }
        let single = super::single_file::plan(&file, opts.configs.as_deref())?;
        println!("single-file checkpoint: {} ({}); {} source tensors ignored", single.kind, single.config_origin, single.ignored);
        if single.ema > 0 {
            println!("single-file checkpoint: {} EMA tensors (model_ema.*) ignored: the model's own weights are converted", single.ema);
        }
        check_configs(&single.configs, &single.scheduler)?;
        check_taesd(opts, taesd_config.as_ref(), &single.configs)?;
        job.write(&file, &single.items)?;
        components = single.configs;
        scheduler = single.scheduler;
        tokenizer = tokenizer_info(None, &components["text_encoder"]);
        default_name = src.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    }
    if let (Some(dir), Some(config)) = (&opts.taesd, taesd_config) {
        components.insert("taesd".into(), config);
        for path in super::safetensors::model_files(dir)? {
            let file = SourceFile::read(&path)?;
            let items: Vec<Item> = file.names().filter(|n| file.is_float(n)).map(|n| Item::copy("taesd", n.as_str(), n.as_str())).collect();
            job.write(&file, &items)?;
        }
    }
    job.writer.flush()?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        name: opts.name.clone().unwrap_or(default_name),
        components,
        scheduler,
        tokenizer,
        tensors: job.tensors,
        shards: job.writer.shards,
        suggested: opts.suggested.clone(),
    };
    manifest.validate()?;
    let path = out.join("manifest.json");
    std::fs::write(&path, manifest.to_json()).map_err(|e| Error::io(&path, e))?;
    Ok(Converted { manifest, sizes: job.sizes })
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
