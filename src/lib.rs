//! websd: Stable Diffusion on WebGPU, written with burn.
//!
//! The model code is backend-agnostic: tensors carry their backend in their `Device`, so the same
//! code runs on WebGPU in the browser, wgpu over Vulkan/Metal natively, and burn's CPU backend in
//! tests.

pub mod config_json;
pub mod error;
pub mod gpu;
pub mod image;
pub mod kernels;
pub mod memory;
pub mod model;
pub mod pipeline;
pub mod prompt;
pub mod rng;
pub mod scheduler;
pub mod suggested;
pub mod tokenizer;
pub mod tools;
pub mod weights;

#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
