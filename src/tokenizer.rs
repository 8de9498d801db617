//! The CLIP tokenizer (byte-level BPE, 49408 ids), with the vocabulary embedded.
//!
//! Our own implementation of what transformers' `CLIPTokenizer` does with the real SD 1.x / 2.x
//! tokenizer folders (checked against it by tests/fixtures/make_tokenizer_fixtures.py):
//! 1. normalize: NFC, every run of whitespace to one space, lower case (char by char);
//! 2. split out the special tokens `<|startoftext|>` / `<|endoftext|>` (the real configs mark them
//!    `normalized: true`, so any case matches) and, for SD 2.x, its pad token `!` (the real
//!    special_tokens_map.json names it as a plain string, which transformers registers as a
//!    special token: a `!` in a prompt becomes id 0, the padding id, as in diffusers);
//! 3. pre-tokenize with CLIP's pattern, then with GPT-2's byte-level pattern, map bytes to CLIP's
//!    printable byte alphabet;
//! 4. BPE each piece (the last symbol carries `</w>`), lowest merge rank first.
//!
//! `assets/clip_merges.txt.gz` (the merges; the vocabulary is built from them as CLIP does) is
//! shared by SD 1.x and 2.x, which differ only in the padding. A prompt becomes 77 ids: BOS, up to
//! 75 tokens, EOS, padding. Longer prompts are split into 75-token chunks, each wrapped and padded
//! the same way; the pipeline encodes each chunk and concatenates the embeddings (as A1111 does;
//! diffusers truncates instead, which equals our first chunk).

use std::collections::HashMap;
use std::io::Read;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};
use crate::prompt;

/// Start of text.
pub const BOS: u32 = 49406;
/// End of text; also SD 1.x's padding.
pub const EOS: u32 = 49407;
/// The text encoder's context length.
pub const MAX_LEN: usize = 77;
/// Prompt tokens per 77-id sequence.
pub const CHUNK: usize = MAX_LEN - 2;
/// The most chunks a prompt may have (1200 tokens, about 5000 characters of English): every chunk
/// is one more text-encoder pass and 77 more keys in every cross-attention of every step, so a
/// pasted 100 kB text would run for hours in a browser. Longer prompts are refused in words.
pub const MAX_CHUNKS: usize = 16;

/// CLIP's 48894 BPE merges (`left right` per line, by rank), from openai-clip's
/// bpe_simple_vocab_16e6.txt.gz: the vocabulary follows from them (see `from_merges`).
static CLIP_MERGES_GZ: &[u8] = include_bytes!("../assets/clip_merges.txt.gz");

/// CLIP's pre-tokenizer pattern (the special tokens are split out before it runs).
const CLIP_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+";
/// GPT-2's byte-level pattern, which tokenizers' ByteLevel pre-tokenizer applies to each piece
/// after CLIP's (pieces hold no whitespace, so its whitespace alternatives never match).
const BYTE_LEVEL_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+";
const END_OF_WORD: &str = "</w>";

/// Token ids and weights for the text encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    /// One or more sequences of exactly `MAX_LEN` ids.
    pub chunks: Vec<Vec<u32>>,
    /// Per id, the prompt weight of its token (1.0 for BOS, EOS, padding and unweighted text).
    pub weights: Vec<Vec<f32>>,
    /// The number of prompt tokens (without BOS/EOS/padding).
    pub token_count: usize,
    /// True when the prompt was longer than `CHUNK` tokens and was split.
    pub chunked: bool,
}

pub struct ClipTokenizer {
    vocab: HashMap<String, u32>,
    /// (left id, right id) → (rank, id of the merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Per byte, the ids of its symbol inside a word and at a word's end (with `</w>`).
    byte_ids: [[u32; 2]; 256],
    /// The texts split out whole before pre-tokenization, with their ids.
    specials: Vec<(&'static str, u32)>,
    clip_pattern: Regex,
    byte_level_pattern: Regex,
    whitespace: Regex,
    pad_id: u32,
}

impl ClipTokenizer {
    /// The embedded CLIP tokenizer, padding with `pad_id` (`EOS` for SD 1.x, 0 for SD 2.x: their
    /// tokenizers' `pad_token` is "<|endoftext|>" and "!").
    pub fn new(pad_id: u32) -> Result<Self> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(CLIP_MERGES_GZ).read_to_string(&mut text).map_err(|e| Error::Other(format!("embedded clip_merges.txt.gz: {e}")))?;
        Self::from_merges(&text, pad_id)
    }

    /// The embedded tokenizer, built once per padding id (the page asks for token counts as the
    /// user types).
    pub fn shared(pad_id: u32) -> Result<std::sync::Arc<Self>> {
        use std::sync::{Arc, Mutex, OnceLock};
        static CACHE: OnceLock<Mutex<HashMap<u32, Arc<ClipTokenizer>>>> = OnceLock::new();
        let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.get(&pad_id) {
            return Ok(t.clone());
        }
        let t = Arc::new(Self::new(pad_id)?);
        cache.insert(pad_id, t.clone());
        Ok(t)
    }

    /// A tokenizer from CLIP's merges (`left right` per line, by rank). The vocabulary is CLIP's:
    /// the 256 byte symbols, the same with `</w>`, each merge's result by rank, then
    /// `<|startoftext|>` and `<|endoftext|>` (so 48894 merges give 49408 ids).
    pub fn from_merges(text: &str, pad_id: u32) -> Result<Self> {
        let invalid = |what: String| Error::Other(format!("invalid CLIP merges: {what}"));
        let byte_chars = byte_alphabet();
        let pairs: Vec<(&str, &str)> =
            text.lines().filter(|l| !l.is_empty() && !l.starts_with("#version")).map(|l| l.split_once(' ').ok_or_else(|| invalid(format!("line {l:?}")))).collect::<Result<_>>()?;
        // CLIP lists the byte symbols by code point: the printable bytes, then the rest (256 on).
        let mut units = byte_chars;
        units.sort_unstable();
        let byte_ids = byte_chars.map(|c| {
            let at = units.binary_search(&c).expect("a byte symbol") as u32;
            [at, at + 256]
        });
        let mut tokens: Vec<String> = units.iter().map(|c| c.to_string()).collect();
        tokens.extend(units.iter().map(|c| format!("{c}{END_OF_WORD}")));
        tokens.extend(pairs.iter().map(|(l, r)| format!("{l}{r}")));
        tokens.extend(["<|startoftext|>".to_string(), "<|endoftext|>".to_string()]);
        let vocab: HashMap<String, u32> = tokens.into_iter().enumerate().map(|(i, t)| (t, i as u32)).collect();
        if vocab.len() != 512 + pairs.len() + 2 {
            return Err(invalid("two merges give the same token".into()));
        }
        let id = |token: &str| vocab.get(token).copied().ok_or_else(|| invalid(format!("{token:?} is not in the vocabulary")));
        let mut merges = HashMap::with_capacity(pairs.len());
        for (rank, (left, right)) in pairs.iter().enumerate() {
            merges.insert((id(left)?, id(right)?), (rank as u32, id(&format!("{left}{right}"))?));
        }
        if id("<|startoftext|>")? != BOS || id("<|endoftext|>")? != EOS {
            return Err(invalid("the special tokens are not at CLIP's ids".into()));
        }
        let mut specials = vec![("<|startoftext|>", BOS), ("<|endoftext|>", EOS)];
        if pad_id != EOS && pad_id != BOS {
            // Only SD 2.x's "!" (id 0) is a padding token in the CLIP family.
            if pad_id != 0 {
                return Err(Error::UnsupportedConfig(format!("pad id {pad_id}: CLIP tokenizers pad with 49407 or 0 (\"!\")")));
            }
            specials.push(("!", 0));
        }
        let regex = |p: &str| Regex::new(p).expect("a valid pattern");
        Ok(Self { vocab, merges, byte_ids, specials, clip_pattern: regex(CLIP_PATTERN), byte_level_pattern: regex(BYTE_LEVEL_PATTERN), whitespace: regex(r"\s+"), pad_id })
    }

    /// The padding id for a model whose tokenizer pads with `pad_token` (from its
    /// tokenizer_config.json / special_tokens_map.json).
    pub fn pad_id_for_token(&self, pad_token: &str) -> Result<u32> {
        self.vocab.get(pad_token).copied().ok_or_else(|| Error::UnsupportedConfig(format!("pad_token {pad_token:?} is not in the CLIP vocabulary")))
    }

    /// The BPE ids of `text`, without BOS/EOS.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>> {
        let normalized: String = text.nfc().collect();
        let normalized = self.whitespace.replace_all(&normalized, " ");
        let normalized: String = normalized.chars().flat_map(char::to_lowercase).collect();
        let mut ids = Vec::new();
        let mut rest = normalized.as_str();
        while !rest.is_empty() {
            // The earliest special token (the longest where two start at once).
            let next = self.specials.iter().filter_map(|&(s, id)| rest.find(s).map(|at| (at, std::cmp::Reverse(s.len()), id))).min();
            let (plain, special) = match next {
                Some((at, std::cmp::Reverse(len), id)) => (&rest[..at], Some((at + len, id))),
                None => (rest, None),
            };
            self.encode_plain(plain, &mut ids);
            match special {
                Some((end, id)) => {
                    ids.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(ids)
    }

    /// Pre-tokenizes and BPE-encodes normalized text that holds no special token.
    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) {
        for clip_piece in self.clip_pattern.find_iter(text) {
            for piece in self.byte_level_pattern.find_iter(clip_piece.as_str()) {
                ids.extend(self.bpe(piece.as_str().as_bytes()));
            }
        }
    }

    /// One word's BPE: start from its bytes' symbols (the last one ends the word) and apply the
    /// merge of lowest rank until none applies.
    fn bpe(&self, word: &[u8]) -> Vec<u32> {
        let last = word.len() - 1;
        let mut symbols: Vec<u32> = word.iter().enumerate().map(|(i, &b)| self.byte_ids[b as usize][usize::from(i == last)]).collect();
        loop {
            let best = symbols.windows(2).enumerate().filter_map(|(i, pair)| self.merges.get(&(pair[0], pair[1])).map(|&(rank, merged)| (rank, i, merged))).min();
            let Some((_, i, merged)) = best else { break };
            symbols[i] = merged;
            symbols.remove(i + 1);
        }
        symbols
    }

    /// `text` as is (no weighting syntax), as transformers' tokenizer with
    /// `padding="max_length", max_length=77, truncation=True` gives it, plus further chunks.
    pub fn encode(&self, text: &str) -> Result<Encoded> {
        let ids = self.token_ids(text)?;
        let weights = vec![1.0; ids.len()];
        Ok(self.chunk(&ids, &weights))
    }

    /// A prompt with A1111 weighting syntax: each fragment tokenized on its own, its weight
    /// given to each of its tokens.
    pub fn encode_weighted(&self, prompt_text: &str) -> Result<Encoded> {
        let (mut ids, mut weights) = (Vec::new(), Vec::new());
        for fragment in prompt::parse(prompt_text) {
            let fragment_ids = self.token_ids(&fragment.text)?;
            weights.extend(std::iter::repeat_n(fragment.weight, fragment_ids.len()));
            ids.extend(fragment_ids);
        }
        Ok(self.chunk(&ids, &weights))
    }

    fn chunk(&self, ids: &[u32], weights: &[f32]) -> Encoded {
        let mut chunks = Vec::new();
        let mut chunk_weights = Vec::new();
        // An empty prompt is still one sequence: BOS, EOS, padding.
        let n_chunks = ids.len().div_ceil(CHUNK).max(1);
        for c in 0..n_chunks {
            let range = c * CHUNK..((c + 1) * CHUNK).min(ids.len());
            let mut seq = Vec::with_capacity(MAX_LEN);
            let mut w = Vec::with_capacity(MAX_LEN);
            seq.push(BOS);
            w.push(1.0);
            seq.extend_from_slice(&ids[range.clone()]);
            w.extend_from_slice(&weights[range]);
            seq.push(EOS);
            w.push(1.0);
            seq.resize(MAX_LEN, self.pad_id);
            w.resize(MAX_LEN, 1.0);
            chunks.push(seq);
            chunk_weights.push(w);
        }
        Encoded { chunks, weights: chunk_weights, token_count: ids.len(), chunked: n_chunks > 1 }
    }
}

/// CLIP's (and GPT-2's) byte alphabet: printable Latin-1 bytes stand for themselves, the others
/// for the code points from 256 on, in byte order.
fn byte_alphabet() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut chars = ['\0'; 256];
    let mut next = 256;
    for b in 0..256u32 {
        let code = if printable(b) {
            b
        } else {
            next += 1;
            next - 1
        };
        chars[b as usize] = char::from_u32(code).expect("a valid code point");
    }
    chars
}

/// How a prompt is tokenized, for the page's counter and the CLI's notice.
#[derive(Clone, Debug, PartialEq)]
pub struct PromptLength {
    pub tokens: usize,
    pub chunks: usize,
}

impl PromptLength {
    pub fn of(text: &str) -> Result<Self> {
        let encoded = ClipTokenizer::shared(EOS)?.encode_weighted(text)?;
        Ok(Self { tokens: encoded.token_count, chunks: encoded.chunks.len() })
    }

    /// What users are told when a prompt is split (None when it fits one chunk), or refused
    /// (over [`MAX_CHUNKS`]).
    pub fn notice(&self, what: &str) -> Option<String> {
        if self.chunks > MAX_CHUNKS {
            return Some(too_long(what, self.tokens));
        }
        (self.chunks > 1).then(|| {
            format!(
                "the {what} has {} tokens, more than CLIP's {CHUNK}: it is encoded as {} chunks of up to {CHUNK} tokens and the chunks are joined (as A1111 does)",
                self.tokens, self.chunks
            )
        })
    }
}

/// The refusal of a prompt of `tokens` tokens, over [`MAX_CHUNKS`] chunks.
pub fn too_long(what: &str, tokens: usize) -> String {
    format!("the {what} has {tokens} tokens; websd takes up to {} ({MAX_CHUNKS} chunks of {CHUNK}): shorten it", MAX_CHUNKS * CHUNK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_length_counts_tokens_and_chunks_and_notices_only_splits() {
        let short = PromptLength::of("a (photo:1.2) of a cat").unwrap();
        assert_eq!(short, PromptLength { tokens: 5, chunks: 1 });
        assert_eq!(short.notice("prompt"), None);
        let exactly = PromptLength::of(&"cat ".repeat(CHUNK)).unwrap();
        assert_eq!(exactly, PromptLength { tokens: CHUNK, chunks: 1 });
        let long = PromptLength::of(&"cat ".repeat(CHUNK + 1)).unwrap();
        assert_eq!(long, PromptLength { tokens: CHUNK + 1, chunks: 2 });
        let notice = long.notice("prompt").unwrap();
        assert!(notice.contains("76 tokens") && notice.contains("2 chunks"), "{notice}");
        // Over the limit the notice says it will be refused (StableDiffusion::tokenize refuses it).
        let at_limit = PromptLength::of(&"cat ".repeat(MAX_CHUNKS * CHUNK)).unwrap();
        assert!(at_limit.notice("prompt").unwrap().contains("16 chunks of up to 75"));
        let over = PromptLength::of(&"cat ".repeat(MAX_CHUNKS * CHUNK + 1)).unwrap();
        assert_eq!(over.notice("negative prompt").unwrap(), "the negative prompt has 1201 tokens; websd takes up to 1200 (16 chunks of 75): shorten it");
        assert!(std::sync::Arc::ptr_eq(&ClipTokenizer::shared(EOS).unwrap(), &ClipTokenizer::shared(EOS).unwrap()));
    }

    #[test]
    fn embedded_tokenizer_wraps_and_pads() {
        let t = ClipTokenizer::new(EOS).unwrap();
        let e = t.encode("a photo of a cat").unwrap();
        assert_eq!(e.chunks.len(), 1);
        assert!(!e.chunked);
        let ids = &e.chunks[0];
        assert_eq!(ids.len(), MAX_LEN);
        assert_eq!(ids[0], BOS);
        assert_eq!(ids[e.token_count + 1], EOS);
        assert!(ids[e.token_count + 2..].iter().all(|&i| i == EOS));
        assert_eq!(e.token_count, 5);

        let sd2 = ClipTokenizer::new(0).unwrap();
        assert_eq!(sd2.pad_id_for_token("!").unwrap(), 0);
        assert_eq!(sd2.pad_id_for_token("<|endoftext|>").unwrap(), EOS);
        let e2 = sd2.encode("a photo of a cat").unwrap();
        assert_eq!(e2.chunks[0][..7], ids[..7]);
        assert!(e2.chunks[0][7..].iter().all(|&i| i == 0));

        let empty = t.encode("").unwrap();
        assert_eq!(empty.chunks.len(), 1);
        assert_eq!(&empty.chunks[0][..3], &[BOS, EOS, EOS]);
    }

    #[test]
    fn long_prompts_are_chunked() {
        let t = ClipTokenizer::new(EOS).unwrap();
        let words = vec!["cat"; 160].join(" ");
        let e = t.encode(&words).unwrap();
        assert_eq!(e.token_count, 160);
        assert!(e.chunked);
        assert_eq!(e.chunks.len(), 3);
        let cat = t.token_ids("cat").unwrap()[0];
        for c in &e.chunks[..2] {
            assert_eq!(c[0], BOS);
            assert!(c[1..76].iter().all(|&i| i == cat));
            assert_eq!(c[76], EOS);
        }
        assert_eq!(&e.chunks[2][..12], &[BOS, cat, cat, cat, cat, cat, cat, cat, cat, cat, cat, EOS]);
        // Exactly 75 tokens still fit one sequence.
        assert!(!t.encode(&vec!["cat"; 75].join(" ")).unwrap().chunked);
    }

    #[test]
    fn weights_follow_tokens() {
        let t = ClipTokenizer::new(EOS).unwrap();
        let e = t.encode_weighted("a (red:1.5) [cat]").unwrap();
        let plain = t.encode("a red cat").unwrap();
        assert_eq!(e.chunks, plain.chunks);
        let w = &e.weights[0];
        assert_eq!(w[0], 1.0);
        assert_eq!(w[1], 1.0);
        assert_eq!(w[2], 1.5);
        assert!((w[3] - 1.0 / 1.1).abs() < 1e-6);
        assert!(w[4..].iter().all(|&x| x == 1.0));
    }
}
