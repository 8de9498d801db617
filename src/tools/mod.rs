//! What the CLI and bench.html run besides generating: the benchmark (`websd bench`; ops.rs: its
//! hot ops one by one), the parity check against reference outputs (`websd parity`; compare.rs:
//! the error measure it shares), the self-test computation (`websd probe`, the
//! page's GPU check), the real-weights TAESD round trip, the download sizes (`websd sizes`), and the memory soak
//! (`websd generate --soak`).

pub mod bench;
pub mod compare;
pub mod ops;
#[cfg(not(target_arch = "wasm32"))]
pub mod parity;
pub mod probe;
pub mod roundtrip;
#[cfg(not(target_arch = "wasm32"))]
pub mod sizes;
pub mod soak;
