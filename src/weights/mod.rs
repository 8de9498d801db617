//! Weights: where tensors come from and how they get onto the device.
//!
//! Every model part is built through a [`WeightLoader`], which asks a [`TensorSource`] for each
//! tensor by its diffusers/transformers name, checks the shape, and tracks which names were used so
//! that leftovers are reported. Sources: safetensors files (diffusers folders), random values (the
//! full-size configs in tests and benchmarks, no download), and converted models (manifest.json + sha256-named shards, f16/q8/q4; see docs/FORMAT.md).

pub mod convert;
pub mod loader;
pub mod lora;
pub mod manifest;
pub mod prepared;
pub mod quant;
pub mod random;
pub mod safetensors;
pub mod shards;
pub mod single_file;

pub use loader::{TensorSource, WeightLoader};
pub use manifest::{Manifest, WeightsError};
pub use random::RandomSource;
pub use safetensors::SafetensorsSource;
pub use shards::{ManifestSource, ShardStore};
