//! The native CLI as a user runs it: a misspelled or unknown flag is refused before anything runs;
//! inpainting with --init and --mask.

use std::process::Command;

fn websd(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_websd")).args(args).output().expect("run websd");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_misspelled_flag_is_refused_with_the_nearest_real_one() {
    // `--step 4` used to run 20 steps without a word.
    let (code, err) = websd(&["generate", "no-such-model", "--prompt", "a cat", "--step", "4"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown option --step for `websd generate` (did you mean --steps?)"), "{err}");

    let (code, err) = websd(&["bench", "--colour", "red"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unknown option --colour for `websd bench`") && !err.contains("did you mean"), "{err}");

    let (code, err) = websd(&["noise", "--seed"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--seed needs a value"), "{err}");

    let (code, err) = websd(&["roundtrip", "a", "b"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unexpected argument \"b\""), "{err}");

    // Known flags pass the check and reach the command (which then fails on the missing folder).
    let (code, err) = websd(&["generate", "no-such-model", "--prompt", "a cat", "--steps", "4", "--taesd"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no such model folder"), "{err}");

    let (code, out) = websd(&["noise", "--seed", "3", "--count", "2"]);
    assert_eq!(code, Some(0), "{out}");
}

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `--mask` inpaints, on a plain model and on a 9-channel inpainting one (converted from its
/// single file); a mask without a start image, and an inpainting model without a mask, are
/// refused by what to give.
#[test]
fn generate_inpaints_with_a_mask() {
    let dir = std::env::temp_dir().join(format!("websd-cli-inpaint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let sd1 = fixtures().join("sd1").to_string_lossy().into_owned();
    let common = ["--prompt", "a lighthouse", "--steps", "2", "--width", "64", "--height", "64", "--seed", "5", "--cpu"];
    let run = |model: &str, extra: &[&str]| websd(&[&["generate", model][..], &common, extra].concat());

    let (code, err) = run(&sd1, &["--out", &path("init.png")]);
    assert_eq!(code, Some(0), "{err}");
    // White (repaint) on the right half, black (keep) on the left.
    let mut mask = vec![0u8; 64 * 64 * 4];
    for (i, px) in mask.chunks_mut(4).enumerate() {
        let v = if i % 64 >= 32 { 255 } else { 0 };
        px.copy_from_slice(&[v, v, v, 255]);
    }
    let png = websd::image::encode_png(&websd::image::RgbaImage { width: 64, height: 64, pixels: mask }, "").unwrap();
    std::fs::write(path("mask.png"), png).unwrap();

    let (code, err) = run(&sd1, &["--init", &path("init.png"), "--mask", &path("mask.png"), "--strength", "1", "--out", &path("plain.png")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&sd1, &["--mask", &path("mask.png"), "--out", &path("no-init.png")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("a mask needs a start image"), "{err}");

    let converted = path("inpainting-model");
    let single = fixtures().join("single_file/sd1_inpaint.safetensors").to_string_lossy().into_owned();
    let (code, err) = websd(&["convert", &single, "--out", &converted, "--configs", &sd1]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&converted, &["--out", &path("no-mask.png")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("this is an inpainting model: give it a start image and a mask"), "{err}");
    let (code, err) = run(&converted, &["--init", &path("init.png"), "--mask", &path("mask.png"), "--out", &path("nine.png")]);
    assert_eq!(code, Some(0), "{err}");
    for made in ["plain.png", "nine.png"] {
        let image = websd::image::decode_png(made, &std::fs::read(path(made)).unwrap()).unwrap();
        assert_eq!((image.width, image.height), (64, 64), "{made}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `--lora FILE:WEIGHT` merges a LoRA and writes its A1111 tag into the PNG's prompt; the same tag
/// in a prompt finds its file through `--lora-dir` and makes the same image. A quantized (q8)
/// converted model takes a LoRA too. A tag without a file is refused by what to pass.
#[test]
fn generate_merges_loras_from_flags_or_prompt_tags() {
    let dir = std::env::temp_dir().join(format!("websd-cli-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let sd1 = fixtures().join("sd1").to_string_lossy().into_owned();
    let loras = fixtures().join("lora").to_string_lossy().into_owned();
    let kohya = fixtures().join("lora/kohya.safetensors").to_string_lossy().into_owned();
    let common = ["--steps", "2", "--width", "64", "--height", "64", "--seed", "8", "--cpu"];
    let run = |model: &str, prompt: &str, extra: &[&str]| websd(&[&["generate", model, "--prompt", prompt][..], &common, extra].concat());
    let png = |name: &str| {
        let bytes = std::fs::read(path(name)).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (websd::image::decode_png(name, &bytes).unwrap().pixels, text)
    };

    let (code, err) = run(&sd1, "a fox", &["--lora", &format!("{kohya}:0.7"), "--out", &path("flag.png")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&sd1, "a fox <lora:kohya:0.7>", &["--lora-dir", &loras, "--out", &path("tag.png")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&sd1, "a fox", &["--out", &path("plain.png")]);
    assert_eq!(code, Some(0), "{err}");
    let ((flag, flag_text), (tag, tag_text), (plain, _)) = (png("flag.png"), png("tag.png"), png("plain.png"));
    assert!(flag_text.contains("a fox <lora:kohya:0.7>\nSteps: 2"), "the PNG's prompt carries the tag");
    assert!(tag_text.contains("a fox <lora:kohya:0.7>\nSteps: 2"));
    assert_eq!(flag, tag, "a flag and a prompt tag make the same image");
    assert_ne!(flag, plain, "the LoRA changes the image");

    let (code, err) = run(&sd1, "a fox <lora:kohya:0.7>", &["--out", &path("none.png")]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the prompt asks for <lora:kohya> but no file is given: pass --lora kohya.safetensors or --lora-dir DIR"), "{err}");

    let q8 = path("sd1-q8");
    let (code, err) = websd(&["convert", &sd1, "--out", &q8, "--quant", "q8"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&q8, "a fox", &["--lora", &format!("{kohya}:0.7"), "--out", &path("q8-lora.png")]);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = run(&q8, "a fox", &["--out", &path("q8.png")]);
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(png("q8-lora.png").0, png("q8.png").0, "the LoRA changes the q8 model's image");
    std::fs::remove_dir_all(&dir).ok();
}
