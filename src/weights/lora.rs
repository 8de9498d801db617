//! LoRA: low-rank updates `W += weight · scale · up · down`, merged into the weights as they load.
//!
//! Two namings are read, the two people publish:
//! - kohya / A1111 (`lora_unet_down_blocks_0_…_to_q.lora_down.weight`, `.lora_up.weight`,
//!   `.alpha`; `lora_te_text_model_…` for the text encoder): scale = alpha / rank;
//! - diffusers / PEFT (`unet.down_blocks.0.….to_q.lora_A.weight`, `.lora_B.weight`;
//!   `text_encoder.…`): scale 1 (alpha = rank, what diffusers assumes without an alpha).
//!
//! Modules are matched by their path with `.` read as `_` (kohya's spelling), so both namings
//! meet the model's own weight names. The merge happens in f32 on the device, after a quantized
//! base tensor is dequantized and before the model casts it to its dtype: the LoRA costs one small
//! matmul per changed weight at load and nothing per step, and the base stays as stored (a
//! different set of LoRAs is a reload, not a download).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use burn::prelude::*;
use burn::tensor::TensorData;

use super::{SafetensorsSource, TensorSource};
use crate::error::{Error, Result};

/// The networks a LoRA can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Unet,
    TextEncoder,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::Unet => "unet",
            Component::TextEncoder => "text_encoder",
        }
    }
}

/// One module's low-rank pair.
#[derive(Debug, Clone)]
struct Update {
    /// The file's name for it (its down/A tensor), for errors.
    tensor: String,
    down: (Vec<f32>, Vec<usize>),
    up: (Vec<f32>, Vec<usize>),
    scale: f32,
}

/// A LoRA file, parsed.
#[derive(Debug, Clone)]
pub struct Lora {
    /// What the user calls it (the file name without .safetensors).
    pub name: String,
    updates: BTreeMap<(Component, String), Update>,
}

/// A module path as the match key: `.` → `_`, without the text tower's `text_model` level.
fn key(path: &str) -> String {
    let k = path.replace('.', "_");
    k.strip_prefix("text_model_").map(str::to_string).unwrap_or(k)
}

impl Lora {
    /// Parses a LoRA .safetensors file; `name` is what errors call it.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Self> {
        let file = SafetensorsSource::from_bytes(name, bytes)?;
        let bad = |message: String| Error::BadLora(format!("LoRA {name}: {message}"));
        let mut pairs: BTreeMap<(Component, String), TensorNames> = BTreeMap::new();
        for tensor in file.names() {
            let (component, module, part) = if let Some(rest) = tensor.strip_prefix("lora_unet_") {
                split_kohya(Component::Unet, rest)
            } else if let Some(rest) = tensor.strip_prefix("lora_te_") {
                split_kohya(Component::TextEncoder, rest)
            } else if let Some(rest) = tensor.strip_prefix("unet.") {
                split_peft(Component::Unet, rest)
            } else if let Some(rest) = tensor.strip_prefix("text_encoder.") {
                split_peft(Component::TextEncoder, rest)
            } else {
                None
            }
            .ok_or_else(|| bad(format!("`{tensor}` is not a LoRA tensor websd reads (kohya lora_unet_…/lora_te_… or diffusers unet.…/text_encoder.… names)")))?;
            let entry = pairs.entry((component, key(module))).or_default();
            match part {
                Part::Down => entry.0 = Some(tensor.clone()),
                Part::Up => entry.1 = Some(tensor.clone()),
                Part::Alpha => entry.2 = Some(tensor.clone()),
            }
        }
        if pairs.is_empty() {
            return Err(bad("the file holds no tensors".into()));
        }
        let mut updates = BTreeMap::new();
        for (module, (down, up, alpha)) in pairs {
            let (Some(down), Some(up)) = (down, up) else {
                return Err(bad(format!("module `{}` of the {} has no down/up pair", module.1, module.0.name())));
            };
            let down_values = file.read_f32(&down)?;
            let up_values = file.read_f32(&up)?;
            let rank = down_values.1[0];
            if down_values.1.len() < 2 || up_values.1.len() < 2 || up_values.1[1] != rank {
                return Err(bad(format!("`{down}` {:?} and `{up}` {:?} are not a rank-{rank} pair", down_values.1, up_values.1)));
            }
            let scale = match alpha {
                Some(a) => file.read_f32(&a)?.0.first().copied().ok_or_else(|| bad(format!("`{a}` is empty")))? / rank as f32,
                None => 1.0,
            };
            updates.insert(module, Update { tensor: down, down: down_values, up: up_values, scale });
        }
        Ok(Self { name: name.to_string(), updates })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self::from_bytes(&name, bytes)
    }

    /// How many modules of `component` it changes.
    pub fn modules(&self, component: Component) -> usize {
        self.updates.keys().filter(|(c, _)| *c == component).count()
    }
}

/// A module's down, up and alpha tensor names in the file, as found.
type TensorNames = (Option<String>, Option<String>, Option<String>);

enum Part {
    Down,
    Up,
    Alpha,
}

fn split_kohya(component: Component, rest: &str) -> Option<(Component, &str, Part)> {
    let (module, part) = rest.split_once('.')?;
    let part = match part {
        "lora_down.weight" => Part::Down,
        "lora_up.weight" => Part::Up,
        "alpha" => Part::Alpha,
        _ => return None,
    };
    Some((component, module, part))
}

fn split_peft(component: Component, rest: &str) -> Option<(Component, &str, Part)> {
    if let Some(module) = rest.strip_suffix(".lora_A.weight") {
        Some((component, module, Part::Down))
    } else {
        rest.strip_suffix(".lora_B.weight").map(|module| (component, module, Part::Up))
    }
}

/// A [`TensorSource`] that adds LoRA updates to one component's weights as they load. After the
/// model is built, [`WithLoras::finish`] refuses a LoRA module that matched no weight.
pub struct WithLoras<'a> {
    base: &'a mut dyn TensorSource,
    component: Component,
    /// Model weight key → (LoRA name, update, weight).
    updates: BTreeMap<String, Vec<(String, Update, f32)>>,
    applied: BTreeSet<String>,
}

impl<'a> WithLoras<'a> {
    pub fn new(base: &'a mut dyn TensorSource, component: Component, loras: &[(Lora, f32)]) -> Self {
        let mut updates: BTreeMap<String, Vec<(String, Update, f32)>> = BTreeMap::new();
        for (lora, weight) in loras {
            for ((c, module), update) in &lora.updates {
                if *c == component {
                    updates.entry(module.clone()).or_default().push((lora.name.clone(), update.clone(), *weight));
                }
            }
        }
        Self { base, component, updates, applied: BTreeSet::new() }
    }

    /// Refuses the first LoRA module that matched no weight of the model (a LoRA for another
    /// architecture, or a naming websd does not map).
    pub fn finish(self) -> Result<()> {
        match self.updates.iter().find(|(module, _)| !self.applied.contains(*module)) {
            Some((_, list)) => {
                let (lora, update, _) = &list[0];
                Err(Error::BadLora(format!("LoRA {lora}: `{}` matches no weight of this model's {}", update.tensor, self.component.name())))
            }
            None => Ok(()),
        }
    }

    fn weight_key(name: &str) -> Option<String> {
        name.strip_suffix(".weight").map(key)
    }
}

impl TensorSource for WithLoras<'_> {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.base.shape(name)
    }

    fn shape_for(&self, name: &str, expected: &[usize]) -> Option<Vec<usize>> {
        self.base.shape_for(name, expected)
    }

    fn names(&self) -> Vec<String> {
        self.base.names()
    }

    fn load(&mut self, name: &str, shape: &[usize], device: &Device) -> Result<Tensor<1>> {
        let mut flat = self.base.load(name, shape, device)?;
        let Some(module) = Self::weight_key(name) else { return Ok(flat) };
        let Some(list) = self.updates.get(&module) else { return Ok(flat) };
        let count: usize = shape.iter().product();
        for (lora, update, weight) in list {
            let (down, down_shape) = &update.down;
            let (up, up_shape) = &update.up;
            let rank = down_shape[0];
            let (outputs, inputs) = (up_shape[0], down_shape[1..].iter().product::<usize>());
            // Linear [out, in] and conv [out, in, k, k] (with a 1×1 up) alike: up·down, reshaped.
            if up_shape[2..].iter().any(|&d| d != 1) || outputs * inputs != count || shape[0] != outputs {
                return Err(Error::BadLora(format!(
                    "LoRA {lora}: `{}` is {down_shape:?} (up {up_shape:?}), which does not fit the model's {} {name} {shape:?}",
                    update.tensor,
                    self.component.name()
                )));
            }
            let up = Tensor::<2>::from_data(TensorData::new(up.clone(), [outputs, rank]), device);
            let down = Tensor::<2>::from_data(TensorData::new(down.clone(), [rank, inputs]), device);
            flat = flat + up.matmul(down).reshape([count]) * (update.scale * weight);
        }
        self.applied.insert(module);
        Ok(flat)
    }

    fn load_rows(&mut self, name: &str, shape: &[usize], rows: Range<usize>, device: &Device) -> Result<Tensor<1>> {
        // Only unchanged weights are read in parts (LoRAs do not touch the token embedding).
        if Self::weight_key(name).is_some_and(|m| self.updates.contains_key(&m)) {
            let row: usize = shape[1..].iter().product();
            return Ok(self.load(name, shape, device)?.narrow(0, rows.start * row, rows.len() * row));
        }
        self.base.load_rows(name, shape, rows, device)
    }
}
