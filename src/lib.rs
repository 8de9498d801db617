//! websd: Stable Diffusion on WebGPU, written with burn.
//!
//! The model code is backend-agnostic: tensors carry their backend in their `Device`, so the same
//! code runs on WebGPU in the browser, wgpu over Vulkan/Metal natively, and burn's CPU backend in
//! tests.

pub mod bench;
pub mod config_json;
pub mod error;
pub mod generate;
pub mod gpu;
pub mod image;
pub mod memory;
pub mod model;
#[cfg(not(target_arch = "wasm32"))]
pub mod parity;
pub mod pipeline;
pub mod probe;
pub mod prompt;
pub mod rng;
pub mod roundtrip;
pub mod scheduler;
#[cfg(not(target_arch = "wasm32"))]
pub mod sizes;
pub mod suggested;
pub mod tokenizer;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
