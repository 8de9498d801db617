//! Hostile inputs outside the weight files (those are in weights.rs): PNGs for img2img and masks
//! that are truncated, 16-bit, palette, grey, claim a huge size or are random mutations; and a
//! 100 kB prompt. Each gets a clear error or a correct image, never a panic or a huge allocation.

use proptest::prelude::*;
use websd::image::decode_png;

/// A `width`×`height` PNG of `color`/`depth` whose samples are `sample(i)` (`i` counts bytes).
fn png_bytes(width: u32, height: u32, color: png::ColorType, depth: png::BitDepth, palette: Option<Vec<u8>>, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if let Some(p) = palette {
            encoder.set_palette(p);
        }
        encoder.write_header().unwrap().write_image_data(data).unwrap();
    }
    out
}

fn rgba_2x1() -> Vec<u8> {
    png_bytes(2, 1, png::ColorType::Rgba, png::BitDepth::Eight, None, &[10, 20, 30, 255, 40, 50, 60, 128])
}

#[test]
fn every_png_layout_decodes_to_8_bit_rgba() {
    assert_eq!(decode_png("t", &rgba_2x1()).unwrap().pixels, [10, 20, 30, 255, 40, 50, 60, 128]);
    // 16-bit RGB: the high byte of each sample, alpha added.
    let rgb16 = png_bytes(1, 1, png::ColorType::Rgb, png::BitDepth::Sixteen, None, &[0x12, 0x34, 0xAB, 0xCD, 0xFF, 0x00]);
    assert_eq!(decode_png("t", &rgb16).unwrap().pixels, [0x12, 0xAB, 0xFF, 255]);
    // Grey, grey + alpha, a palette.
    let grey = png_bytes(2, 1, png::ColorType::Grayscale, png::BitDepth::Eight, None, &[7, 200]);
    assert_eq!(decode_png("t", &grey).unwrap().pixels, [7, 7, 7, 255, 200, 200, 200, 255]);
    let grey_alpha = png_bytes(1, 1, png::ColorType::GrayscaleAlpha, png::BitDepth::Eight, None, &[9, 99]);
    assert_eq!(decode_png("t", &grey_alpha).unwrap().pixels, [9, 9, 9, 99]);
    let indexed = png_bytes(2, 1, png::ColorType::Indexed, png::BitDepth::Eight, Some(vec![1, 2, 3, 4, 5, 6]), &[1, 0]);
    assert_eq!(decode_png("t", &indexed).unwrap().pixels, [4, 5, 6, 255, 1, 2, 3, 255]);
}

#[test]
fn a_cut_or_foreign_file_is_refused_in_words() {
    let good = rgba_2x1();
    // Cut in the signature, in the header, and in the pixel data (a file cut after its pixels,
    // in the end marker, still gives the whole image).
    for cut in [0, 5, 8, 20, 33, 40] {
        let err = decode_png("the start image", &good[..cut]).unwrap_err().to_string();
        assert!(err.contains("the start image: not a PNG image websd can read"), "cut at {cut}: {err}");
    }
    let err = decode_png("the mask", b"GIF89a not a png").unwrap_err().to_string();
    assert!(err.contains("the mask: not a PNG image websd can read"), "{err}");
}

/// A header claiming 100 000 × 100 000 pixels (40 GB of RGBA) is refused before any pixel buffer
/// is allocated (it used to abort the process).
#[test]
fn a_png_claiming_a_huge_size_is_refused_without_allocating_it() {
    let mut bytes = rgba_2x1();
    // IHDR's width and height follow the 8-byte signature, the chunk length and "IHDR".
    bytes[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bytes[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    // The chunk's CRC covers "IHDR" and its 13 data bytes.
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_png("the start image", &bytes).unwrap_err().to_string();
    assert!(err.contains("the start image: the PNG is 100000×100000 pixels; websd reads PNGs up to 8192×8192"), "{err}");
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any byte of a small PNG changed, or the file cut anywhere: an image or an error, never a
    /// panic. (The decoder's CRC checks catch most changes; the rest decode to some pixels.)
    #[test]
    fn mutated_pngs_never_panic(at in 0usize..200, value in any::<u8>(), cut in 0usize..200) {
        let mut bytes = png_bytes(5, 3, png::ColorType::Rgb, png::BitDepth::Eight, None, &[77u8; 45]);
        let at = at % bytes.len();
        bytes[at] = value;
        bytes.truncate(cut.max(at + 1).min(bytes.len()));
        if let Ok(image) = decode_png("t", &bytes) {
            prop_assert_eq!(image.pixels.len(), image.width * image.height * 4);
        }
    }
}

/// A pasted 100 kB text as the prompt: `websd generate` refuses it in words, before running the
/// text encoder hundreds of times.
#[test]
fn a_100_kb_prompt_is_refused_in_words() {
    let model = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("www/models/tiny-sd1");
    let prompt = "a lighthouse on a cliff at dusk, ".repeat(100_000 / 33);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_websd"))
        .args(["generate", "--model", model.to_str().unwrap(), "--prompt", &prompt, "--steps", "1", "--width", "64", "--height", "64", "--cpu", "--out"])
        .arg(std::env::temp_dir().join("websd-long-prompt.png"))
        .output()
        .expect("run websd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a 100 kB prompt was accepted");
    assert!(err.contains("tokens; websd takes up to 1200 (16 chunks of 75): shorten it"), "{err}");
}

/// Prompt text from the weighting and LoRA syntax's own pieces, nested and unbalanced, with
/// numbers near f32's limits, or any string at all.
fn prompt_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("("),
        Just(")"),
        Just("["),
        Just("]"),
        Just(":"),
        Just(":1.5)"),
        Just(":1e38)"),
        Just(":99999999999999999999999999999999999999)"),
        Just(":-3)"),
        Just(":0)"),
        Just("<lora:"),
        Just("x:0.7>"),
        Just(">"),
        Just("\\("),
        Just("\\"),
        Just("BREAK"),
        Just(" "),
        Just("a cat"),
        Just("é"),
        Just("🦊"),
        Just("\u{0}"),
        Just(","),
    ];
    prop_oneof![any::<String>(), proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// No prompt panics the parsers or the tokenizer, and every token weight that comes out is a
    /// finite number (an infinite one would turn the image into NaN).
    #[test]
    fn prompts_never_panic_and_weights_stay_finite(text in prompt_text()) {
        let tokenizer = websd::tokenizer::ClipTokenizer::shared(websd::tokenizer::EOS).unwrap();
        let _ = websd::prompt::lora_tags(&text);
        for fragment in websd::prompt::parse(&text) {
            prop_assert!(fragment.weight.is_finite(), "weight {} for {:?} of {:?}", fragment.weight, fragment.text, text);
        }
        if let Ok(encoded) = tokenizer.encode_weighted(&text) {
            prop_assert!(encoded.weights.iter().flatten().all(|w| w.is_finite()), "{text:?}");
        }
        let _ = websd::tokenizer::PromptLength::of(&text);
    }
}

/// Weights that are each finite but whose product is not (f32's limit is 3.4e38).
#[test]
fn nested_huge_weights_stay_finite() {
    let huge = "9".repeat(38);
    for prompt in
        [&format!("((a lighthouse:{huge}):{huge})") as &str, &format!("((a:-{huge}):{huge})"), "((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))"]
    {
        for fragment in websd::prompt::parse(prompt) {
            assert!(fragment.weight.is_finite(), "{prompt}: weight {} for {:?}", fragment.weight, fragment.text);
        }
    }
}
