//! Loading a converted model shard by shard: each shard's bytes are verified, its tensors are
//! dequantized onto the device, and the bytes are dropped before the next shard is fetched, so the
//! CPU never holds more than one shard (the browser hands shards in from IndexedDB, natively they
//! are read from the model folder). The models are then built from the prepared device tensors.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use burn::prelude::*;

use super::TensorSource;
use super::manifest::{Manifest, ShardEntry};
use super::shards::{ManifestSource, ShardStore};
use crate::error::{Error, Result};

/// One component's tensors, already on the device.
#[derive(Default)]
pub struct PreparedSource {
    tensors: HashMap<String, (Vec<usize>, Tensor<1>)>,
}

impl TensorSource for PreparedSource {
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|(s, _)| s.clone())
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tensors.keys().cloned().collect();
        names.sort();
        names
    }

    fn load(&mut self, name: &str, _shape: &[usize], _device: &Device) -> Result<Tensor<1>> {
        // Handed out once: the module now owns it.
        self.tensors.get(name).map(|(_, t)| t.clone()).ok_or_else(|| Error::MissingTensor(name.to_string()))
    }
}

/// Fetches every shard in turn (`fetch(index, entry)` resolves to its bytes), dequantizes its
/// tensors onto `device`, and returns the tensors per component. `progress(done, total)` after
/// each shard.
pub async fn prepare<F, Fut>(manifest: &Manifest, device: &Device, mut fetch: F, mut progress: impl FnMut(usize, usize)) -> Result<HashMap<String, PreparedSource>>
where
    F: FnMut(usize, ShardEntry) -> Fut,
    Fut: Future<Output = Result<Vec<u8>>>,
{
    let mut sources: HashMap<String, ManifestSource> = HashMap::new();
    for component in manifest.components.keys() {
        sources.insert(component.clone(), ManifestSource::new(manifest, component, ShardStore::new(manifest))?);
    }
    let mut prepared: HashMap<String, PreparedSource> = manifest.components.keys().map(|c| (c.clone(), PreparedSource::default())).collect();
    let total = manifest.shards.len();
    for (index, entry) in manifest.shards.iter().enumerate() {
        let bytes: Arc<[u8]> = fetch(index, entry.clone()).await?.into();
        let in_shard: Vec<_> = manifest.tensors.iter().filter(|t| t.shard == index as u64).collect();
        // Each component reading this shard gets it once (insert verifies size and sha256).
        let mut components: Vec<&str> = in_shard.iter().map(|t| t.component.as_str()).collect();
        components.sort_unstable();
        components.dedup();
        for component in components {
            let source = sources.get_mut(component).ok_or_else(|| Error::Other(format!("shard {index} holds tensors of unknown component {component}")))?;
            source.store_mut().insert(index, bytes.clone())?;
        }
        for tensor in in_shard {
            let source = sources.get_mut(&tensor.component).expect("inserted above");
            let shape: Vec<usize> = tensor.shape.iter().map(|&d| d as usize).collect();
            let value = source.load(&tensor.name, &shape, device)?;
            prepared.get_mut(&tensor.component).expect("component").tensors.insert(tensor.name.clone(), (shape, value));
        }
        for source in sources.values_mut() {
            source.store_mut().remove(index);
        }
        progress(index + 1, total);
    }
    Ok(prepared)
}
