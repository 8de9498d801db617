//! websd's native command line.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("probe") => cli::probe(&args[1..]),
        Some("gpu-info") => cli::gpu_info(),
        _ => {
            eprintln!("{}", cli::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(message) = result {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use burn::prelude::*;

    pub const USAGE: &str = "usage: websd <command>
  probe [--device flex|wgpu]   print the probe computation's values as JSON
  gpu-info                     print the GPU adapter wgpu opens, as JSON";

    /// `--device flex|wgpu` (default flex).
    fn device_arg(args: &[String]) -> Result<Device, String> {
        match args.iter().position(|a| a == "--device").map(|i| args.get(i + 1).map(String::as_str)) {
            None | Some(Some("flex")) => Ok(Device::flex()),
            Some(Some("wgpu")) => Ok(pollster::block_on(websd::gpu::open_gpu())?.0),
            Some(other) => Err(format!("unknown --device {other:?}: use flex or wgpu")),
        }
    }

    pub fn probe(args: &[String]) -> Result<(), String> {
        let values = websd::probe::probe(&device_arg(args)?);
        println!("{}", serde_json::to_string(&values).map_err(|e| e.to_string())?);
        Ok(())
    }

    pub fn gpu_info() -> Result<(), String> {
        let (_, info) = pollster::block_on(websd::gpu::open_gpu())?;
        println!("{}", serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?);
        Ok(())
    }
}
