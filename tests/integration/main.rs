//! websd's native integration tests: one test binary (one link of burn), a module per area.

mod bench;
mod cli;
mod clip;
mod common;
mod configs;
mod hostile;
mod lora;
mod parity;
mod pipeline;
mod scheduler;
mod sdxl;
mod taesd;
mod tokenizer;
mod unet;
mod vae;
mod weights;
