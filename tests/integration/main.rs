//! websd's native integration tests: one test binary (one link of burn), a module per area.

mod clip;
mod common;
mod taesd;
mod unet;
mod vae;
mod weights;
