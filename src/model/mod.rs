//! The Stable Diffusion networks, mirroring diffusers/transformers module for module.

pub mod attention;
pub mod clip;
pub mod config;
pub mod conv;
pub mod embeddings;
pub mod linear;
pub mod resnet;
pub mod taesd;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
