//! websd's native command line.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("probe") => cli::probe(&args[1..]),
        Some("gpu-info") => cli::gpu_info(),
        Some("convert") => cli::convert(&args[1..]),
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
  gpu-info                     print the GPU adapter wgpu opens, as JSON
  convert SRC --out DIR [--quant f16|q8|q4] [--text-encoder-quant f16|q8|q4] [--vae f16|f32|q8]
          [--taesd DIR] [--name NAME] [--configs DIR] [--q4-min]
                               a diffusers folder or LDM .safetensors file → manifest.json + shards";

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

    /// `websd convert`: see docs/FORMAT.md.
    pub fn convert(args: &[String]) -> Result<(), String> {
        use websd::weights::convert::{self, ConvertOptions, Quant};
        let mut opts = ConvertOptions::default();
        let (mut src, mut out) = (None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
            match a.as_str() {
                "--out" => out = Some(std::path::PathBuf::from(value()?)),
                "--quant" => opts.quant = Quant::parse(&value()?).map_err(|e| e.to_string())?,
                "--text-encoder-quant" => opts.text_encoder_quant = Some(Quant::parse(&value()?).map_err(|e| e.to_string())?),
                "--vae" => opts.vae = convert::VaeStorage::parse(&value()?).map_err(|e| e.to_string())?,
                "--taesd" => opts.taesd = Some(value()?.into()),
                "--name" => opts.name = Some(value()?),
                "--configs" => opts.configs = Some(value()?.into()),
                "--q4-min" => opts.q4_min = true,
                s if s.starts_with("--") => return Err(format!("unknown option {s}\n{USAGE}")),
                s if src.is_none() => src = Some(std::path::PathBuf::from(s)),
                s => return Err(format!("unexpected argument {s}\n{USAGE}")),
            }
        }
        let (src, out) = match (src, out) {
            (Some(s), Some(o)) => (s, o),
            _ => return Err(format!("convert needs SRC and --out DIR\n{USAGE}")),
        };
        let converted = convert::convert(&src, &out, &opts).map_err(|e| e.to_string())?;
        print!("{}", convert::size_table(&converted));
        println!("wrote {}", out.join("manifest.json").display());
        Ok(())
    }
}
