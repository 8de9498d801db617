//! Weights: where tensors come from and how they get onto the device.
//!
//! Every model part is built through a [`WeightLoader`], which asks a [`TensorSource`] for each
//! tensor by its diffusers/transformers name, checks the shape, and tracks which names were used so
//! that leftovers are reported. Sources: safetensors files (diffusers folders), random values (the
//! full-size configs in tests and benchmarks, no download), and later the quantized shard format.

pub mod loader;
pub mod random;
pub mod safetensors;

pub use loader::{TensorSource, WeightLoader};
pub use random::RandomSource;
pub use safetensors::SafetensorsSource;
