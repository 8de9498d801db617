//! Importing a model in the page: the converter (src/weights/convert.rs) run on the user's files
//! inside the worker, reading them a range at a time and handing each shard to the store
//! (www/store.js `importModel`), so that a 4 GB checkpoint never sits whole in memory.

use js_sys::{Function, Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::{invalid_request, set};
use crate::error::{Error, Result};
use crate::weights::convert::{self, ConvertIo, ConvertOptions, Folder, InputFile, ModelSource, Quant, Source, VaeStorage};
use crate::weights::manifest::ShardEntry;

/// One of the files the user picked: `role` "model" (the checkpoint, or a diffusers folder's
/// files) or "configs" (a diffusers folder whose configs a single file is read with).
#[derive(serde::Deserialize)]
struct PickedFile {
    path: String,
    size: u64,
    #[serde(default)]
    role: Role,
}

#[derive(serde::Deserialize, Default, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Role {
    #[default]
    Model,
    Configs,
}

/// The page's choices; left out, the CLI's defaults.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ImportOptions {
    quant: Option<String>,
    text_encoder_quant: Option<String>,
    vae: Option<String>,
    name: Option<String>,
}

impl ImportOptions {
    fn convert_options(&self) -> Result<ConvertOptions> {
        let mut opts = ConvertOptions::default();
        if let Some(q) = &self.quant {
            opts.quant = Quant::parse(q)?;
        }
        if let Some(q) = &self.text_encoder_quant {
            opts.text_encoder_quant = Some(Quant::parse(q)?);
        }
        if let Some(v) = &self.vae {
            opts.vae = VaeStorage::parse(v)?;
        }
        opts.name = self.name.clone().filter(|n| !n.trim().is_empty());
        Ok(opts)
    }
}

/// What the picked files are: one `.safetensors` file is a single-file checkpoint; files with
/// `unet/config.json` inside are a diffusers folder.
fn source(picked: Vec<PickedFile>) -> Result<Source> {
    let files: Vec<InputFile> = picked.iter().map(|f| InputFile { path: f.path.clone(), size: f.size }).collect();
    let of_role = |role: Role| picked.iter().enumerate().filter(move |(_, f)| f.role == role).map(|(i, f)| (i, f.path.clone()));
    let model = Folder::from_paths("model", of_role(Role::Model));
    let configs = of_role(Role::Configs).next().is_some().then(|| Folder::from_paths("configs", of_role(Role::Configs)));
    let checkpoints: Vec<usize> = of_role(Role::Model)
        .filter(|(_, p)| p.rsplit_once('.').is_some_and(|(_, e)| matches!(e.to_ascii_lowercase().as_str(), "safetensors" | "ckpt" | "pt" | "pth" | "bin")))
        .map(|(i, _)| i)
        .collect();
    let model = if model.get("unet/config.json").is_some() {
        ModelSource::Diffusers(model)
    } else if let [file] = checkpoints[..] {
        ModelSource::SingleFile { file, configs }
    } else if checkpoints.is_empty() {
        return Err(Error::InvalidInput("choose a .safetensors checkpoint, or a diffusers folder (with unet/, text_encoder/, vae/ and scheduler/ inside)".into()));
    } else {
        return Err(Error::InvalidInput(format!("these files hold {} checkpoints and no diffusers layout (unet/config.json): choose one checkpoint file", checkpoints.len())));
    };
    Ok(Source { files, model, taesd: None })
}

/// The store's side, in JavaScript: `read(index, start, end)` → Promise<Uint8Array>,
/// `begin(bytes, name)`, `putShard({file, size, sha256}, bytes)` and `progress(done, total)` →
/// (a promise of) false to cancel.
struct JsIo {
    read: Function,
    begin: Function,
    put_shard: Function,
    progress: Function,
}

/// Calls `f` and awaits what it returns; a JS failure becomes an `Error` with its message
/// (`Cancelled` when the JS error is named so).
async fn call(f: &Function, args: &[JsValue]) -> Result<JsValue> {
    let array = js_sys::Array::new();
    for a in args {
        array.push(a);
    }
    let failed = |e: JsValue| match e.dyn_ref::<js_sys::Error>() {
        Some(e) if e.name() == "Cancelled" => Error::Cancelled,
        Some(e) => Error::Other(String::from(e.message())),
        None => Error::Other(e.as_string().unwrap_or_else(|| format!("{e:?}"))),
    };
    let value = f.apply(&JsValue::NULL, &array).map_err(failed)?;
    JsFuture::from(Promise::resolve(&value)).await.map_err(failed)
}

impl ConvertIo for JsIo {
    async fn read(&mut self, file: usize, start: u64, end: u64) -> Result<Vec<u8>> {
        let bytes = call(&self.read, &[(file as u32).into(), (start as f64).into(), (end as f64).into()]).await?;
        Ok(Uint8Array::new(&bytes).to_vec())
    }

    async fn begin(&mut self, bytes: u64, name: &str) -> Result<()> {
        call(&self.begin, &[(bytes as f64).into(), name.into()]).await.map(drop)
    }

    async fn put_shard(&mut self, shard: &ShardEntry, bytes: Vec<u8>) -> Result<()> {
        let entry = Object::new();
        set(&entry, "file", shard.file.as_str());
        set(&entry, "size", shard.size as f64);
        set(&entry, "sha256", shard.sha256.as_str());
        call(&self.put_shard, &[entry.into(), Uint8Array::from(bytes.as_slice()).into()]).await.map(drop)
    }

    async fn progress(&mut self, done: u64, total: u64) -> Result<()> {
        let go_on = call(&self.progress, &[(done as f64).into(), (total as f64).into()]).await?;
        if go_on.is_falsy() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

fn method(io: &Object, name: &str) -> Result<Function, JsValue> {
    Reflect::get(io, &name.into()).ok().and_then(|f| f.dyn_into::<Function>().ok()).ok_or_else(|| invalid_request(format!("import_model: io.{name} must be a function")))
}

/// Converts the picked `files` (`[{path, size, role}]`: see `PickedFile`) with `options`
/// (`{quant, text_encoder_quant, vae, name}`, as `websd convert` takes them) through `io`
/// (`{read, begin, putShard, progress}`: see `JsIo`). Every header and config is read and checked
/// before `begin`; a refused file (a pickle, a cut file, SDXL, an unknown architecture) stores
/// nothing. Resolves to `{manifest, name, notes, table}` (the manifest as JSON text).
#[wasm_bindgen]
pub async fn import_model(files: JsValue, options: JsValue, io: Object) -> Result<JsValue, JsValue> {
    let picked: Vec<PickedFile> = serde_wasm_bindgen::from_value(files).map_err(|e| invalid_request(format!("import_model: bad file list: {e}")))?;
    let options: ImportOptions = if options.is_undefined() {
        ImportOptions::default()
    } else {
        serde_wasm_bindgen::from_value(options).map_err(|e| invalid_request(format!("import_model: bad options: {e}")))?
    };
    let opts = options.convert_options()?;
    let source = source(picked)?;
    let mut io = JsIo { read: method(&io, "read")?, begin: method(&io, "begin")?, put_shard: method(&io, "putShard")?, progress: method(&io, "progress")? };
    let converted = convert::convert_source(&source, &opts, &mut io).await?;
    let result = Object::new();
    set(&result, "manifest", converted.manifest.to_json());
    set(&result, "name", converted.manifest.name.as_str());
    set(&result, "notes", converted.notes.iter().map(JsValue::from).collect::<js_sys::Array>());
    set(&result, "table", convert::size_table(&converted));
    Ok(result.into())
}
