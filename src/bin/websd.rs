//! websd's native command line.

#[cfg(not(target_arch = "wasm32"))]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(command) = args.first()
        && let Err(message) = flags::check(command, &args[1..])
    {
        eprintln!("error: {message}\n{}", cli::USAGE);
        std::process::exit(2);
    }
    let result = match args.first().map(String::as_str) {
        Some("probe") => cli::probe(&args[1..]),
        Some("gpu-info") => cli::gpu_info(),
        Some("parity") => cli::parity(&args[1..]),
        Some("memory") => cli::memory(&args[1..]),
        Some("generate") => cli::generate(&args[1..]),
        Some("noise") => cli::noise(&args[1..]),
        Some("sizes") => cli::sizes(&args[1..]),
        Some("convert") => cli::convert(&args[1..]),
        Some("bench") => cli::bench(&args[1..]),
        Some("roundtrip") => cli::roundtrip(&args[1..]),
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

/// Every subcommand's flags, checked before it runs: a misspelled or unknown flag (`--step 4`)
/// is an error that names the nearest real one, never a silent default.
#[cfg(not(target_arch = "wasm32"))]
mod flags {
    /// (command, flags that take a value, switches, how many bare arguments it takes)
    const COMMANDS: &[(&str, &[&str], &[&str], usize)] = &[
        ("probe", &["--device"], &[], 0),
        ("gpu-info", &[], &[], 0),
        ("parity", &["--device", "--dtype"], &[], 1),
        ("memory", &["--model", "--size", "--dtype", "--batch"], &[], 0),
        (
            "generate",
            &[
                "--model",
                "--prompt",
                "--negative",
                "--steps",
                "--guidance",
                "--seed",
                "--width",
                "--height",
                "--scheduler",
                "--batch",
                "--clip-skip",
                "--init",
                "--mask",
                "--lora",
                "--lora-dir",
                "--strength",
                "--device",
                "--dtype",
                "--out",
                "--soak",
            ],
            &["--taesd", "--cpu"],
            1,
        ),
        ("noise", &["--seed", "--stream", "--count"], &[], 0),
        ("sizes", &["--model"], &[], 0),
        ("convert", &["--out", "--quant", "--text-encoder-quant", "--vae", "--taesd", "--name", "--configs", "--suggest-steps", "--suggest-guidance"], &["--q4-min"], 1),
        ("bench", &["--model", "--device", "--dtype", "--size", "--runs", "--warmup", "--only", "--steps", "--match"], &["--ops"], 0),
        ("roundtrip", &["--image", "--size", "--device", "--seed", "--out"], &[], 1),
    ];

    /// Checks `args` (after the command) against the command's flags. Unknown commands pass: the
    /// dispatcher prints the usage for them.
    pub fn check(command: &str, args: &[String]) -> Result<(), String> {
        let Some(&(_, values, switches, bare)) = COMMANDS.iter().find(|c| c.0 == command) else { return Ok(()) };
        let (mut i, mut bare_seen) = (0, 0);
        while i < args.len() {
            let a = args[i].as_str();
            if values.contains(&a) {
                if i + 1 >= args.len() {
                    return Err(format!("{a} needs a value"));
                }
                i += 2;
                continue;
            }
            if a.starts_with("--") && !switches.contains(&a) {
                let nearest = values.iter().chain(switches).min_by_key(|f| edit_distance(a, f)).filter(|f| edit_distance(a, f) <= 2);
                let hint = nearest.map(|f| format!(" (did you mean {f}?)")).unwrap_or_default();
                return Err(format!("unknown option {a} for `websd {command}`{hint}"));
            }
            if !a.starts_with("--") {
                bare_seen += 1;
                if bare_seen > bare {
                    return Err(format!("unexpected argument {a:?} for `websd {command}`"));
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Levenshtein distance (flags are short: the quadratic table is nothing).
    fn edit_distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, &cb) in b.iter().enumerate() {
                let next = (previous + usize::from(ca != cb)).min(row[j] + 1).min(row[j + 1] + 1);
                previous = row[j + 1];
                row[j + 1] = next;
            }
        }
        row[b.len()]
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use burn::prelude::*;

    pub const USAGE: &str = "usage: websd <command>
  probe [--device flex|wgpu]   print the probe computation's values as JSON
  gpu-info                     print the GPU adapter wgpu opens, as JSON
  parity DIR [--device flex|wgpu] [--dtype f32|f16]
                               run every component fixture under DIR (config.json + weights +
                               parity.safetensors) and compare with its reference outputs;
                               fails when an f32 relative error exceeds 1e-4 (f16 is reported)
  memory [--model sd15|sd21|sdxl] [--size 512] [--dtype f32|f16] [--batch 2]
                               the largest GPU buffers of one generation, from the configs
  generate [--model] MODEL --prompt TEXT [--negative TEXT] [--steps N] [--guidance G] [--seed 0]
           [--width W] [--height H] [--scheduler NAME] [--batch 1] [--clip-skip 1]
           [--init IMAGE.png --strength 0.75 [--mask MASK.png]] [--taesd] [--cpu] [--dtype f32|f16]
           [--lora FILE.safetensors[:WEIGHT]]… [--lora-dir DIR] [--soak N]
           [--out out.png]    MODEL: a converted model folder (manifest.json) or a diffusers folder;
                              steps, guidance, size and scheduler left out are the model's own
                              (20 / 7.5 / its sample size / its scheduler_config; LCM: 4 steps;
                              what its manifest suggests)
                              --soak N: N generations in one process (seeds from --seed, batch
                              alternating 1 and --batch, every 5th cancelled after a step), the
                              GPU memory after each; fails if it grows 10% past the first 5 runs'
  sizes [--model sd15|sd21|sd-turbo|sdxl|sdxl-turbo]
                               the text-to-image download under each storage choice
  noise --seed S [--stream N] [--count N]
                               the seeded Gaussian noise as JSON (the browser test compares it)
  convert SRC --out DIR [--quant f16|q8|q4] [--text-encoder-quant f16|q8|q4] [--vae f16|f32|q8]
          [--taesd DIR] [--name NAME] [--configs DIR] [--q4-min]
          [--suggest-steps N] [--suggest-guidance G]
                               a diffusers folder or LDM .safetensors file → manifest.json + shards
  bench [--model sd15|sd21|sd-turbo] [--device wgpu|flex] [--dtype f32|f16] [--size 512] [--runs 5]
        [--warmup 1] [--only text,unet,vae,taesd,image,lora,unet-stock] [--steps N] [--ops [--match TEXT]]
                               time each network of a full-size model (random weights) and print
                               median ms and TFLOP/s (see docs/PERFORMANCE.md); --ops: SD 1.5's
                               hot ops (convs, projections, attention, GroupNorm) one by one,
                               --match: only the rows whose name contains TEXT
  roundtrip TAESD_DIR --image PHOTO.png [--size 256] [--device flex|wgpu] [--seed 0] [--out DIR]
                               encode → decode a photo with a TAESD-family autoencoder (diffusers
                               folder); print the PSNR, and that of random latents; write the
                               input, round trip and random decode as PNGs into DIR";

    /// `--device flex|wgpu` (default flex).
    fn device_arg(args: &[String]) -> Result<Device, String> {
        match args.iter().position(|a| a == "--device").map(|i| args.get(i + 1).map(String::as_str)) {
            None | Some(Some("flex")) => Ok(Device::flex()),
            Some(Some("wgpu")) => Ok(pollster::block_on(websd::gpu::open_gpu())?.0),
            Some(other) => Err(format!("unknown --device {other:?}: use flex or wgpu")),
        }
    }

    pub fn probe(args: &[String]) -> Result<(), String> {
        let values = websd::tools::probe::probe(&device_arg(args)?);
        println!("{}", serde_json::to_string(&values).map_err(|e| e.to_string())?);
        Ok(())
    }

    pub fn gpu_info() -> Result<(), String> {
        let (_, info) = pollster::block_on(websd::gpu::open_gpu())?;
        println!("{}", serde_json::to_string_pretty(&info).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// `--dtype f32|f16` (default f32).
    fn dtype_arg(args: &[String]) -> Result<burn::tensor::FloatDType, String> {
        match args.iter().position(|a| a == "--dtype").map(|i| args.get(i + 1).map(String::as_str)) {
            None | Some(Some("f32")) => Ok(burn::tensor::FloatDType::F32),
            Some(Some("f16")) => Ok(burn::tensor::FloatDType::F16),
            Some(other) => Err(format!("unknown --dtype {other:?}: use f32 or f16")),
        }
    }

    pub fn parity(args: &[String]) -> Result<(), String> {
        let dir = match args.first() {
            Some(d) if !d.starts_with("--") => std::path::PathBuf::from(d),
            _ => return Err(format!("parity needs a fixture folder\n{USAGE}")),
        };
        let dtype = dtype_arg(args)?;
        let mut device = device_arg(args)?;
        if !device.supports_dtype(dtype) {
            return Err(format!("the device does not support {dtype:?}"));
        }
        // Every tensor made from here on (inputs, masks) defaults to the model's dtype.
        device.configure(dtype).map_err(|e| format!("configuring the device for {dtype:?}: {e:?}"))?;
        let rows = websd::tools::parity::run(&dir, &device, dtype).map_err(|e| e.to_string())?;
        if rows.is_empty() {
            return Err(format!("no component fixtures (config.json + parity.safetensors) under {}", dir.display()));
        }
        print!("{}", websd::tools::parity::table(&rows));
        let failed = rows.iter().filter(|r| r.is_failure()).count();
        if failed > 0 {
            return Err(format!("{failed} of {} parity rows failed", rows.len()));
        }
        Ok(())
    }

    /// The value after `flag`, or `default`.
    fn opt<'a>(args: &'a [String], flag: &str, default: &'a str) -> &'a str {
        args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).map(String::as_str).unwrap_or(default)
    }

    pub fn memory(args: &[String]) -> Result<(), String> {
        use websd::model::{
            clip::ClipConfig,
            config::{UNetConfig, VaeConfig},
        };
        let (unet, clip, vae) = match opt(args, "--model", "sd15") {
            "sd15" => (UNetConfig::sd15(), ClipConfig::sd1(), VaeConfig::sd()),
            "sd21" => (UNetConfig::sd21(), ClipConfig::sd2(), VaeConfig::sd()),
            // The wider of SDXL's encoders (bigG) has the larger token embedding.
            "sdxl" | "sdxl-turbo" => (UNetConfig::sdxl(), ClipConfig::sdxl().1, VaeConfig::sdxl()),
            other => return Err(format!("unknown model {other:?}: sd15, sd21, sdxl or sdxl-turbo")),
        };
        let size: usize = opt(args, "--size", "512").parse().map_err(|_| "--size must be a number")?;
        let batch: u64 = opt(args, "--batch", "2").parse().map_err(|_| "--batch must be a number")?;
        let bytes = if opt(args, "--dtype", "f32") == "f16" { 2 } else { 4 };
        let buffers = websd::memory::largest_buffers(&unet, &vae, &clip, size, batch, bytes).map_err(|e| e.to_string())?;
        println!("{:>10}  {:<6}  buffer", "MiB", "≤128?");
        for b in buffers {
            let mib = b.bytes as f64 / (1 << 20) as f64;
            println!("{mib:>10.1}  {:<6}  {}", if b.bytes <= websd::memory::MAX_BUFFER_BYTES { "yes" } else { "NO" }, b.what);
        }
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
                "--suggest-steps" => opts.suggested.steps = Some(value()?.parse().map_err(|_| "--suggest-steps must be a whole number")?),
                "--suggest-guidance" => opts.suggested.guidance_scale = Some(value()?.parse().map_err(|_| "--suggest-guidance must be a number")?),
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
        for note in &converted.notes {
            println!("{note}");
        }
        print!("{}", convert::size_table(&converted));
        println!("wrote {}", out.join("manifest.json").display());
        Ok(())
    }

    /// `websd generate`: text (and optionally an image) to PNG files.
    pub fn generate(args: &[String]) -> Result<(), String> {
        use websd::pipeline::StableDiffusion;
        use websd::pipeline::generate::{Field, Settings};
        let model = match (args.first(), args.iter().position(|a| a == "--model")) {
            (_, Some(i)) => std::path::PathBuf::from(args.get(i + 1).ok_or("--model needs a folder")?),
            (Some(m), None) if !m.starts_with("--") => std::path::PathBuf::from(m),
            _ => return Err(format!("generate needs a model folder\n{USAGE}")),
        };
        if !model.is_dir() {
            return Err(format!("{}: no such model folder (a converted model with manifest.json, or a diffusers folder)", model.display()));
        }
        // The GPU by default (wgpu: Vulkan/Metal/DX12); `--cpu` for burn's CPU backend.
        // The GPU's limits let the pipeline refuse a size that would not fit before it runs.
        let (device, gpu) = if args.iter().any(|a| a == "--cpu") || opt(args, "--device", "wgpu") == "flex" {
            (Device::flex(), None)
        } else if opt(args, "--device", "wgpu") == "wgpu" {
            let (device, info) = pollster::block_on(websd::gpu::open_gpu())?;
            (device, Some(info))
        } else {
            return Err(device_arg(args).err().unwrap_or_default());
        };
        let dtype = dtype_arg(args)?;
        let started = std::time::Instant::now();
        let (prompt, loras) = lora_args(args)?;
        let mut sd = if model.join("manifest.json").is_file() {
            let manifest = websd::weights::Manifest::parse(&std::fs::read(model.join("manifest.json")).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
            let prepared = pollster::block_on(websd::weights::prepared::prepare(
                &manifest,
                &device,
                |_, entry| {
                    let path = model.join(&entry.file);
                    async move { std::fs::read(&path).map_err(|e| websd::Error::io(&path, e)) }
                },
                |_, _| {},
            ))
            .map_err(|e| e.to_string())?;
            StableDiffusion::from_prepared_with_loras(&manifest, prepared, &device, dtype, &loras).map_err(|e| e.to_string())?
        } else {
            let mut sd = StableDiffusion::from_diffusers_dir_with_loras(&model, &device, &loras).map_err(|e| e.to_string())?;
            if dtype != burn::tensor::FloatDType::F32 {
                return Err("--dtype f16 needs a converted model (websd convert)".into());
            }
            sd.dtype = dtype;
            sd
        };
        sd.buffer_limit = gpu.map(|info| info.buffer_limit());
        eprintln!("loaded {} in {:.1} s", model.display(), started.elapsed().as_secs_f64());
        // Flags left out take the model's suggestion (its steps, guidance and size: src/suggested.rs).
        let num = |flag: &str, suggested: f64| -> Result<f64, String> {
            match args.iter().position(|a| a == flag) {
                Some(i) => args.get(i + 1).and_then(|v| v.parse().ok()).ok_or_else(|| format!("{flag} must be a number")),
                None => Ok(suggested),
            }
        };
        let suggested = &sd.suggested;
        let settings = Settings {
            prompt,
            negative_prompt: opt(args, "--negative", "").to_string(),
            steps: num("--steps", suggested.steps as f64)? as usize,
            guidance_scale: num("--guidance", suggested.guidance_scale)?,
            seed: opt(args, "--seed", "0").parse().map_err(|_| "--seed must be a whole number")?,
            width: num("--width", suggested.width as f64)? as usize,
            height: num("--height", suggested.height as f64)? as usize,
            scheduler: opt(args, "--scheduler", "").to_string(),
            batch_count: num("--batch", Field::BATCH.default)? as usize,
            clip_skip: num("--clip-skip", 1.0)? as usize,
            strength: num("--strength", Field::STRENGTH.default)?,
            fast_decode: args.iter().any(|a| a == "--taesd"),
            preview: false,
            init_image: match args.iter().position(|a| a == "--init") {
                Some(i) => Some(read_png(args.get(i + 1).ok_or("--init needs a PNG file")?)?),
                None => None,
            },
            // Inpainting: white is repainted, black kept (the start image's size).
            mask: match args.iter().position(|a| a == "--mask") {
                Some(i) => Some(read_png(args.get(i + 1).ok_or("--mask needs a PNG file")?)?),
                None => None,
            },
        };
        for (text, what) in [(&settings.prompt, "prompt"), (&settings.negative_prompt, "negative prompt")] {
            if let Some(notice) = websd::tokenizer::PromptLength::of(text).map_err(|e| e.to_string())?.notice(what) {
                eprintln!("note: {notice}");
            }
        }
        let started = std::time::Instant::now();
        let name = model.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        if let Some(i) = args.iter().position(|a| a == "--soak") {
            use websd::tools::soak;
            let runs: usize = args.get(i + 1).and_then(|v| v.parse().ok()).ok_or("--soak must be a number of runs")?;
            let mb = |b: u64| b as f64 / 1e6;
            println!("run  seed        batch  cancelled  GPU reserved MB  in use MB");
            let done = pollster::block_on(soak::soak(&sd, &settings, &name, &device, runs, |i, r| {
                println!("{i:>3}  {:<10}  {:>5}  {:>9}  {:>15.2}  {:>9.2}", r.seed, r.batch, if r.cancelled { "yes" } else { "no" }, mb(r.reserved), mb(r.in_use));
            }))
            .map_err(|e| e.to_string())?;
            eprintln!("{runs} runs in {:.1} s", started.elapsed().as_secs_f64());
            return match soak::growth(&done) {
                Some(leak) => Err(leak),
                None => Ok(()),
            };
        }
        let mut bar = ProgressBar::new();
        let images = pollster::block_on(sd.generate_images(&settings, &name, |done, total, _| {
            bar.show(done, total);
            async { true }
        }))
        .map_err(|e| e.to_string())?;
        bar.finish();
        eprintln!("{} image(s) in {:.1} s", images.len(), started.elapsed().as_secs_f64());
        let out = std::path::PathBuf::from(opt(args, "--out", "out.png"));
        for (b, g) in images.iter().enumerate() {
            let path = if images.len() == 1 { out.clone() } else { out.with_file_name(format!("{}-{b}.png", out.file_stem().unwrap_or_default().to_string_lossy())) };
            std::fs::write(&path, &g.png).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("{} (seed {})", path.display(), g.seed);
        }
        Ok(())
    }

    /// The prompt and the LoRAs to merge: each `--lora FILE[:WEIGHT]` adds its `<lora:name:weight>`
    /// tag to the prompt (so the PNG's parameters say it, as A1111's do) unless the prompt has it;
    /// a tag already in the prompt takes its file from `--lora` or `--lora-dir`.
    fn lora_args(args: &[String]) -> Result<(String, Vec<(websd::weights::lora::Lora, f32)>), String> {
        use websd::weights::lora::Lora;
        let mut prompt = opt(args, "--prompt", "").to_string();
        let mut files = std::collections::BTreeMap::new();
        for (i, _) in args.iter().enumerate().filter(|(_, a)| *a == "--lora") {
            let value = &args[i + 1];
            // FILE:WEIGHT, unless what follows the last colon is no number (a path with a colon).
            let (path, weight) = match value.rsplit_once(':').map(|(p, w)| (p, w.parse::<f32>())) {
                Some((p, Ok(w))) => (p, w),
                _ => (value.as_str(), 1.0),
            };
            let lora = Lora::from_file(path).map_err(|e| e.to_string())?;
            let (_, tags) = websd::prompt::lora_tags(&prompt)?;
            if !tags.iter().any(|t| t.name == lora.name) {
                prompt.push_str(&format!(" <lora:{}:{weight}>", lora.name));
            }
            files.insert(lora.name.clone(), lora);
        }
        let (_, tags) = websd::prompt::lora_tags(&prompt)?;
        let dir = args.iter().position(|a| a == "--lora-dir").map(|i| std::path::PathBuf::from(&args[i + 1]));
        let mut loras = Vec::new();
        for tag in tags {
            let lora = match (files.remove(&tag.name), &dir) {
                (Some(lora), _) => lora,
                (None, Some(dir)) => Lora::from_file(dir.join(format!("{}.safetensors", tag.name))).map_err(|e| e.to_string())?,
                (None, None) => return Err(format!("the prompt asks for <lora:{}> but no file is given: pass --lora {0}.safetensors or --lora-dir DIR", tag.name)),
            };
            loras.push((lora, tag.weight));
        }
        Ok((prompt, loras))
    }

    /// An RGBA8 image from a PNG file (for img2img).
    fn read_png(path: &str) -> Result<websd::image::RgbaImage, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
        websd::image::decode_png(path, &bytes).map_err(|e| e.to_string())
    }

    /// `websd roundtrip`: a real autoencoder's encode → decode of a photo (see src/tools/roundtrip.rs).
    pub fn roundtrip(args: &[String]) -> Result<(), String> {
        let dir = match args.first() {
            Some(d) if !d.starts_with("--") => d.clone(),
            _ => return Err(format!("roundtrip needs a TAESD folder\n{USAGE}")),
        };
        let photo = read_png(opt(args, "--image", ""))?;
        let size: usize = opt(args, "--size", "256").parse().map_err(|_| "--size must be a number")?;
        let seed: u64 = opt(args, "--seed", "0").parse().map_err(|_| "--seed must be a whole number")?;
        let device = device_arg(args)?;
        let taesd = websd::model::taesd::Taesd::from_dir(&dir, &device).map_err(|e| e.to_string())?;
        let r = pollster::block_on(websd::tools::roundtrip::taesd_round_trip(&taesd, &photo, size, seed, &device)).map_err(|e| e.to_string())?;
        println!(
            "{size}×{size}: round trip {:.2} dB PSNR, random latents {:.2} dB (latents {:?}, mean {:.3}, std {:.3})",
            r.psnr_db, r.random_psnr_db, r.latent_shape, r.latent_mean, r.latent_std
        );
        if let Some(i) = args.iter().position(|a| a == "--out") {
            let out = std::path::Path::new(args.get(i + 1).ok_or("--out needs a folder")?);
            std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
            for (name, image) in [("input", &r.input), ("roundtrip", &r.round_trip), ("random", &r.random)] {
                let path = out.join(format!("{name}.png"));
                let png = websd::image::encode_png(image, &format!("websd roundtrip {dir}: {name}")).map_err(|e| e.to_string())?;
                std::fs::write(&path, png).map_err(|e| format!("{}: {e}", path.display()))?;
                println!("{}", path.display());
            }
        }
        Ok(())
    }

    /// `websd noise`: the first values of a seed's noise stream, as JSON.
    pub fn noise(args: &[String]) -> Result<(), String> {
        let seed: u64 = opt(args, "--seed", "0").parse().map_err(|_| "--seed must be a whole number")?;
        let stream: u64 = opt(args, "--stream", "0").parse().map_err(|_| "--stream must be a whole number")?;
        let count: usize = opt(args, "--count", "16").parse().map_err(|_| "--count must be a whole number")?;
        println!("{}", serde_json::to_string(&websd::rng::gaussian(seed, stream, count)).map_err(|e| e.to_string())?);
        Ok(())
    }

    /// `websd bench`: see docs/PERFORMANCE.md.
    pub fn bench(args: &[String]) -> Result<(), String> {
        use websd::tools::bench::{self, Options, Part};
        let num = |flag: &str, default: &str| -> Result<usize, String> { opt(args, flag, default).parse().map_err(|_| format!("{flag} must be a number")) };
        let opts = Options {
            model: bench_model(opt(args, "--model", "sd15"))?,
            dtype: dtype_arg(args)?,
            size: num("--size", "512")?,
            runs: num("--runs", "5")?,
            warmup: num("--warmup", "1")?,
            // `--ops`: SD 1.5's hot ops one by one (the baseline of our own kernels).
            parts: Part::parse_list(if args.iter().any(|a| a == "--ops") { "ops" } else { opt(args, "--only", "text,unet,vae,taesd") }).map_err(|e| e.to_string())?,
            steps: if args.iter().any(|a| a == "--steps") { Some(num("--steps", "0")?) } else { None },
            ops_matching: args.iter().any(|a| a == "--match").then(|| opt(args, "--match", "").to_string()),
        };
        let (device, name) = match opt(args, "--device", "wgpu") {
            "flex" => (Device::flex(), "flex (CPU)".to_string()),
            "wgpu" => {
                let (device, info) = pollster::block_on(websd::gpu::open_gpu())?;
                (device, format!("{} ({}, {}, shader-f16 {})", info.adapter, info.backend, info.device_type, info.shader_f16))
            }
            other => return Err(format!("unknown --device {other:?}: use wgpu or flex")),
        };
        if !device.supports_dtype(opts.dtype) {
            return Err(format!("the device does not support {:?}", opts.dtype));
        }
        // The device keeps f32 as its default: parameters are cast to --dtype by the loader and
        // inputs by the bench (configuring f16 made lavapipe fail a dispatch, see PERFORMANCE.md).
        let report = pollster::block_on(bench::run(&opts, &device, &name, |_| {})).map_err(|e| e.to_string())?;
        print!("{}", bench::table(&report));
        if let Some(row) = report.rows.iter().find(|r| !r.finite) {
            return Err(format!("{} produced non-finite values", row.component));
        }
        Ok(())
    }

    /// `sd15`, `sd21`, `sd-turbo`, or a converted model's folder (its architecture, random weights).
    fn bench_model(arg: &str) -> Result<websd::tools::bench::Model, String> {
        let dir = std::path::Path::new(arg);
        if !dir.is_dir() {
            return websd::tools::bench::Model::parse(arg).map_err(|e| e.to_string());
        }
        let path = dir.join("manifest.json");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e} (--model DIR takes a converted model: websd convert)", path.display()))?;
        let manifest = websd::weights::Manifest::parse(&bytes).map_err(|e| e.to_string())?;
        websd::tools::bench::Model::from_manifest(&manifest).map_err(|e| e.to_string())
    }

    /// `websd sizes`: the download of a real model under each storage choice.
    pub fn sizes(args: &[String]) -> Result<(), String> {
        use websd::model::{
            clip::ClipConfig,
            config::{UNetConfig, VaeConfig},
        };
        let model = opt(args, "--model", "sd15");
        let (text, text_2, unet, vae) = match model {
            "sd15" => (ClipConfig::sd1(), None, UNetConfig::sd15(), VaeConfig::sd()),
            // SD-Turbo has SD 2.1's architecture.
            "sd21" | "sd-turbo" => (ClipConfig::sd2(), None, UNetConfig::sd21(), VaeConfig::sd()),
            // SDXL-Turbo has SDXL base's.
            "sdxl" | "sdxl-turbo" => {
                let (first, second) = ClipConfig::sdxl();
                (first, Some(second), UNetConfig::sdxl(), VaeConfig::sdxl())
            }
            other => return Err(format!("unknown model {other:?}: sd15, sd21, sd-turbo, sdxl or sdxl-turbo")),
        };
        let shapes = websd::tools::sizes::text_to_image_shapes(&text, text_2.as_ref(), &unet, &vae).map_err(|e| e.to_string())?;
        let both = if text_2.is_some() { "text encoders (both)" } else { "text encoder" };
        println!("{model}: text-to-image download ({both} + UNet + VAE decoder)");
        println!("{:<22} {:>14} {:>10} {:>13} {:>10}", "storage", "text encoder", "UNet", "VAE decoder", "total");
        for (label, opts) in websd::tools::sizes::settings() {
            let per = websd::tools::sizes::download_bytes(&shapes, &opts);
            let mb = |c: &str| per.get(c).copied().unwrap_or(0) as f64 / 1e6;
            let total: u64 = per.values().sum();
            println!("{label:<22} {:>11.1} MB {:>7.1} MB {:>10.1} MB {:>7.3} GB", mb("text_encoder") + mb("text_encoder_2"), mb("unet"), mb("vae"), total as f64 / 1e9);
        }
        Ok(())
    }

    /// The terminal's progress bar for the sampler steps: `[######------] step 7/20 · 0.4 s/step ·
    /// 5 s left`, redrawn in place on a terminal, one line per step otherwise (logs, CI).
    struct ProgressBar {
        started: std::time::Instant,
        tty: bool,
        drawn: bool,
    }

    impl ProgressBar {
        fn new() -> Self {
            use std::io::IsTerminal;
            Self { started: std::time::Instant::now(), tty: std::io::stderr().is_terminal(), drawn: false }
        }

        fn show(&mut self, done: usize, total: usize) {
            const WIDTH: usize = 24;
            let per_step = self.started.elapsed().as_secs_f64() / done.max(1) as f64;
            let left = per_step * total.saturating_sub(done) as f64;
            let filled = (WIDTH * done).checked_div(total).unwrap_or(WIDTH).min(WIDTH);
            let line = format!("[{}{}] step {done}/{total} · {per_step:.2} s/step · {left:.0} s left", "#".repeat(filled), "-".repeat(WIDTH - filled));
            if self.tty {
                eprint!("\r{line}\x1b[K");
            } else {
                eprintln!("{line}");
            }
            self.drawn = true;
        }

        /// Ends the bar's line (the decoding follows).
        fn finish(&mut self) {
            if self.tty && self.drawn {
                eprintln!();
            }
        }
    }
}
