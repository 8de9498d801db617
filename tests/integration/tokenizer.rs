//! Tokenizer parity with transformers: tests/fixtures/tokenizer/cases.json holds prompts and the
//! ids CLIPTokenizer gave them (padding="max_length", max_length=77, truncation=True).

use std::path::{Path, PathBuf};

use websd::tokenizer::{ClipTokenizer, EOS};

fn cases_path() -> PathBuf {
    std::env::var_os("WEBSD_TOKENIZER_CASES").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/cases.json"))
}

#[test]
fn tokenizer_matches_transformers() {
    let path = cases_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = json.get("cases").unwrap_or(&json).as_array().expect("a list of cases").clone();
    assert!(!cases.is_empty());
    let tokenizer = ClipTokenizer::new(EOS).unwrap();
    let mut failures = Vec::new();
    for case in &cases {
        let prompt = case["prompt"].as_str().expect("prompt");
        let expected: Vec<u32> = case["input_ids"].as_array().expect("input_ids").iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let pad = match case.get("pad_token").and_then(|p| p.as_str()) {
            Some(token) => tokenizer.pad_id_for_token(token).unwrap(),
            None => EOS,
        };
        let ours = ClipTokenizer::new(pad).unwrap().encode(prompt).unwrap();
        // transformers truncates: that is our first chunk.
        if ours.chunks[0] != expected {
            failures.push(format!("{prompt:?} (pad {pad}): ours {:?}, transformers {expected:?}", ours.chunks[0]));
        }
    }
    println!("{} passed, {} failed (tokenizer cases)", cases.len() - failures.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
