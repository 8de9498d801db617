//! Parity runs: every component fixture under a folder, run on every case of its
//! `parity.safetensors`, compared with the reference outputs diffusers/transformers saved there
//! (tests/fixtures/make_fixtures.py). Used by `websd parity DIR` and the integration tests.
//!
//! A component folder holds `config.json`, its weights and `parity.safetensors`, whose tensors are
//! named `case{i}.{name}`: inputs and reference outputs side by side. The component's kind comes
//! from config.json (`_class_name` for diffusers, `architectures` for transformers). Each kind has
//! a [`Runner`] in [`RUNNERS`]: it loads the model and maps a case's inputs to named outputs, each
//! compared with the reference of the same name.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::FloatDType;

use super::compare::errors;
use crate::error::{Error, Result};
use crate::model::clip::{ClipConfig, ClipTextModel};
use crate::model::config::{UNetConfig, VaeConfig};
use crate::model::taesd::{Taesd, TaesdConfig};
use crate::model::unet::{TextTime, UNet2DConditionModel};
use crate::model::vae::AutoencoderKL;
use crate::weights::{SafetensorsSource, WeightLoader};

/// Relative error a component must stay within in f32 (f16 runs are reported, not judged).
pub const F32_TOLERANCE: f32 = 1e-4;

/// One case's inputs, read from the parity file in the model's dtype.
pub struct Case<'a> {
    reference: &'a SafetensorsSource,
    index: usize,
    device: &'a Device,
    dtype: FloatDType,
}

impl Case<'_> {
    fn name(&self, name: &str) -> String {
        format!("case{}.{name}", self.index)
    }

    /// Float input `name` of rank `D`, in the model's dtype.
    pub fn input<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        Ok(self.reference.tensor::<D>(&self.name(name), self.device)?.cast(self.dtype))
    }

    /// Whether the case has a tensor `name` (for outputs only some fixtures record).
    pub fn has(&self, name: &str) -> bool {
        use crate::weights::TensorSource;
        self.reference.shape(&self.name(name)).is_some()
    }

    /// Integer input `name` [B, N] as rows (token ids).
    pub fn rows(&self, name: &str) -> Result<Vec<Vec<i64>>> {
        let (ids, shape) = self.reference.read_i64(&self.name(name))?;
        if shape.len() != 2 {
            return Err(Error::Other(format!("{} should be [batch, tokens], is {shape:?}", self.name(name))));
        }
        Ok(ids.chunks(shape[1].max(1)).map(<[i64]>::to_vec).collect())
    }
}

/// A computed output, named like its reference (`case{i}.{name}`).
pub struct Output {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

impl Output {
    pub fn new<const D: usize>(name: &str, t: Tensor<D>) -> Result<Self> {
        let shape = t.dims().to_vec();
        let values = t.cast(FloatDType::F32).into_data().try_to_vec::<f32>().map_err(|e| Error::Other(format!("reading output {name}: {e:?}")))?;
        Ok(Self { name: name.to_string(), shape, values })
    }
}

/// A loaded component: runs one case.
pub type CaseRunner = Box<dyn Fn(&Case) -> Result<Vec<Output>>>;

/// How to load one kind of component (from its config.json text and weights).
pub struct Runner {
    /// The component's kind as shown in the table.
    pub kind: &'static str,
    /// config.json's `_class_name` (diffusers) or `architectures[0]` (transformers).
    pub class: &'static str,
    pub load: fn(config: &str, w: &mut WeightLoader) -> Result<CaseRunner>,
}

/// Every component parity can run. A new one is a line here and a load function below.
pub const RUNNERS: &[Runner] = &[
    Runner { kind: "text_encoder", class: "CLIPTextModel", load: text_encoder },
    Runner { kind: "text_encoder", class: "CLIPTextModelWithProjection", load: text_encoder },
    Runner { kind: "taesd", class: "AutoencoderTiny", load: taesd },
    Runner { kind: "unet", class: "UNet2DConditionModel", load: unet },
    Runner { kind: "vae", class: "AutoencoderKL", load: vae },
];

/// transformers' CLIPTextModel: last hidden state, pooled output, and clip skip 2 (the
/// penultimate layer through the final layer norm). CLIPTextModelWithProjection (SDXL's second
/// encoder) gives the projected `text_embeds` instead of `pooled`. SDXL fixtures also record
/// `penultimate_hidden_state_raw` (hidden_states[-2], no final layer norm: what SDXL reads).
fn text_encoder(config: &str, w: &mut WeightLoader) -> Result<CaseRunner> {
    let config = ClipConfig::from_json(config)?;
    let model = ClipTextModel::load(&config, w)?;
    let projected = config.with_projection();
    Ok(Box::new(move |case| {
        let ids = case.rows("input_ids")?;
        let last = model.forward(&ids, 1)?;
        let penultimate = model.forward(&ids, 2)?;
        let mut outputs = vec![Output::new("last_hidden_state", last.hidden)?];
        if !projected {
            outputs.push(Output::new("pooled", last.pooled)?);
        }
        outputs.push(Output::new("penultimate_hidden_state", penultimate.hidden)?);
        if projected || case.has("penultimate_hidden_state_raw") {
            let sdxl = model.forward_sdxl(&ids, 2)?;
            outputs.push(Output::new("penultimate_hidden_state_raw", sdxl.hidden)?);
            if projected {
                outputs.push(Output::new("text_embeds", sdxl.pooled)?);
            }
        }
        Ok(outputs)
    }))
}

/// diffusers' AutoencoderTiny: `encode(image).latents` and `decode(latents).sample`.
fn taesd(config: &str, w: &mut WeightLoader) -> Result<CaseRunner> {
    let model = Taesd::load(&TaesdConfig::from_json(config)?, w)?;
    Ok(Box::new(move |case| Ok(vec![Output::new("encoded", model.encode(case.input::<4>("image")?))?, Output::new("decoded", model.decode(case.input::<4>("latents")?))?])))
}

/// diffusers' UNet2DConditionModel: `model(sample, timestep, encoder_hidden_states).sample`, with
/// `added_cond_kwargs` (`text_embeds`, `time_ids`) for SDXL's.
fn unet(config: &str, w: &mut WeightLoader) -> Result<CaseRunner> {
    let model = UNet2DConditionModel::load(&UNetConfig::from_json(config)?, w)?;
    Ok(Box::new(move |case| {
        // Timesteps and time ids stay f32: they feed sinusoidal embeddings, not the weights.
        let t = case.reference.tensor::<1>(&case.name("timestep"), case.device)?;
        let text_time = match model.text_time() {
            Some(_) => Some(TextTime { text_embeds: case.input::<2>("text_embeds")?, time_ids: case.reference.tensor::<2>(&case.name("time_ids"), case.device)? }),
            None => None,
        };
        let out = model.forward_text_time(case.input::<4>("sample")?, t, case.input::<3>("encoder_hidden_states")?, None, text_time)?;
        Ok(vec![Output::new("out", out)?])
    }))
}

/// diffusers' AutoencoderKL: the latent distribution's mean and logvar, and `decode(latents)`.
fn vae(config: &str, w: &mut WeightLoader) -> Result<CaseRunner> {
    let model = AutoencoderKL::load(&VaeConfig::from_json(config)?, w)?;
    Ok(Box::new(move |case| {
        let (mean, logvar) = model.encode(case.input::<4>("image")?);
        Ok(vec![Output::new("mean", mean)?, Output::new("logvar", logvar)?, Output::new("decoded", model.decode(case.input::<4>("latents")?))?])
    }))
}

/// The class config.json declares.
fn class_name(config: &str, path: &Path) -> Result<String> {
    let value = crate::config_json::parse_value(config, &path.display().to_string())?;
    value
        .get("_class_name")
        .and_then(|v| v.as_str())
        .or_else(|| value.get("architectures").and_then(|a| a.get(0)).and_then(|v| v.as_str()))
        .map(String::from)
        .ok_or_else(|| Error::Other(format!("{}: no `_class_name` or `architectures`", path.display())))
}

/// Component folders under `dir` (itself included): those holding config.json and
/// parity.safetensors, in path order.
pub fn discover(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("parity.safetensors").is_file() && d.join("config.json").is_file() {
            found.push(d.clone());
        }
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The case indices present in a parity file (`case{i}.…`).
fn cases(reference: &SafetensorsSource) -> Vec<usize> {
    use crate::weights::TensorSource;
    let indices: BTreeSet<usize> = reference.names().iter().filter_map(|n| n.strip_prefix("case")?.split_once('.')?.0.parse().ok()).collect();
    indices.into_iter().collect()
}

/// One line of the parity table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The component folder, relative to the folder parity was run on.
    pub component: String,
    pub kind: String,
    /// `case{i}`, or `-` when the component could not be loaded.
    pub case: String,
    /// The output's name, or `-` with `error` set.
    pub output: String,
    pub max_abs: f32,
    /// ‖out − ref‖ / ‖ref‖.
    pub rel: f32,
    /// `None` when only reported (f16).
    pub pass: Option<bool>,
    /// Why the row failed without numbers (load error, missing reference, shape mismatch).
    pub error: Option<String>,
}

impl Row {
    fn failed(component: &str, kind: &str, case: &str, output: &str, error: String) -> Self {
        Self { component: component.into(), kind: kind.into(), case: case.into(), output: output.into(), max_abs: f32::NAN, rel: f32::NAN, pass: Some(false), error: Some(error) }
    }

    pub fn is_failure(&self) -> bool {
        self.pass == Some(false)
    }
}

/// Runs every component under `dir` on `device` with parameters and inputs in `dtype`.
/// Failures to load or run a component become failed rows; only an unreadable `dir` is an error.
pub fn run(dir: &Path, device: &Device, dtype: FloatDType) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for folder in discover(dir)? {
        let component = folder.strip_prefix(dir).unwrap_or(&folder).display().to_string();
        let component = if component.is_empty() { folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default() } else { component };
        rows.extend(run_component(&folder, &component, device, dtype));
    }
    Ok(rows)
}

fn run_component(folder: &Path, component: &str, device: &Device, dtype: FloatDType) -> Vec<Row> {
    let setup = || -> Result<(&'static Runner, CaseRunner, SafetensorsSource)> {
        let path = folder.join("config.json");
        let config = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let class = class_name(&config, &path)?;
        let runner = RUNNERS.iter().find(|r| r.class == class).ok_or_else(|| Error::Other(format!("no parity runner for `{class}`")))?;
        let mut source = SafetensorsSource::from_dir(folder)?;
        let mut loader = WeightLoader::new(&mut source, device).with_dtype(dtype);
        let model = (runner.load)(&config, &mut loader)?;
        let reference = SafetensorsSource::from_file(folder.join("parity.safetensors"))?;
        Ok((runner, model, reference))
    };
    let (runner, model, reference) = match setup() {
        Ok(s) => s,
        Err(e) => return vec![Row::failed(component, "?", "-", "-", e.to_string())],
    };
    let mut rows = Vec::new();
    let indices = cases(&reference);
    if indices.is_empty() {
        rows.push(Row::failed(component, runner.kind, "-", "-", "parity.safetensors has no case{i}.* tensors".into()));
    }
    for index in indices {
        let case_name = format!("case{index}");
        let case = Case { reference: &reference, index, device, dtype };
        let outputs = match model(&case) {
            Ok(o) => o,
            Err(e) => {
                rows.push(Row::failed(component, runner.kind, &case_name, "-", e.to_string()));
                continue;
            }
        };
        for out in outputs {
            let row = match reference.read_f32(&case.name(&out.name)) {
                Err(e) => Row::failed(component, runner.kind, &case_name, &out.name, e.to_string()),
                Ok((_, shape)) if shape != out.shape => Row::failed(component, runner.kind, &case_name, &out.name, format!("shape {:?}, reference {shape:?}", out.shape)),
                Ok((expected, _)) => {
                    let (max_abs, rel) = errors(&out.values, &expected);
                    let pass = (dtype == FloatDType::F32).then_some(rel <= F32_TOLERANCE);
                    Row { component: component.into(), kind: runner.kind.into(), case: case_name.clone(), output: out.name, max_abs, rel, pass, error: None }
                }
            };
            rows.push(row);
        }
    }
    rows
}

/// The rows as an aligned text table.
pub fn table(rows: &[Row]) -> String {
    let width = |f: fn(&Row) -> &str, title: &str| rows.iter().map(|r| f(r).len()).chain([title.len()]).max().unwrap_or(0);
    let (wc, wk, wa, wo) = (width(|r| &r.component, "component"), width(|r| &r.kind, "kind"), width(|r| &r.case, "case"), width(|r| &r.output, "output"));
    let mut s = format!("{:wc$}  {:wk$}  {:wa$}  {:wo$}  {:>10}  {:>10}  result\n", "component", "kind", "case", "output", "max abs", "rel err");
    for r in rows {
        let result = match (r.pass, &r.error) {
            (_, Some(e)) => format!("FAIL: {e}"),
            (Some(true), None) => "pass".into(),
            (Some(false), None) => format!("FAIL (> {F32_TOLERANCE:.0e})"),
            (None, None) => "report".into(),
        };
        s += &format!("{:wc$}  {:wk$}  {:wa$}  {:wo$}  {:>10.3e}  {:>10.3e}  {result}\n", r.component, r.kind, r.case, r.output, r.max_abs, r.rel);
    }
    s
}
