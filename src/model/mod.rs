//! The Stable Diffusion networks, mirroring diffusers/transformers module for module.

pub mod attention;
