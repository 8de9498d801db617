//! A1111-style prompt weighting: `(word)` ×1.1, `[word]` ÷1.1, `(word:1.3)` ×1.3, nesting
//! multiplies, `\(` `\)` `\[` `\]` `\\` are literal characters. Unlike A1111, a bracket without
//! its partner is plain text (A1111 lets an unclosed `(` weight the rest of the prompt), and
//! nothing here can panic on any input.
//!
//! The output is a list of (text, weight) fragments; the tokenizer turns it into per-token
//! weights, and the pipeline scales each token's embedding and restores the mean (as A1111 does).

/// One stretch of prompt text with its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct Fragment {
    pub text: String,
    pub weight: f32,
}

/// The largest weight a fragment gets, however its brackets nest (A1111 sets none; SD prompts use
/// 0.5 to 2).
pub const MAX_WEIGHT: f32 = 100.0;
const ROUND: f32 = 1.1;
const SQUARE: f32 = 1.0 / 1.1;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Bracket {
    Round,
    Square,
}

#[derive(Clone, Debug)]
enum Token {
    Text(String),
    Open(Bracket),
    /// A closing bracket; `Some(w)` for `:w)`. `raw` is the source text, for when it's unmatched.
    Close {
        kind: Bracket,
        weight: Option<f32>,
        raw: String,
    },
}

/// `:` then optional spaces, a number, optional spaces and `)`: returns (weight, bytes used).
fn explicit_weight(s: &str) -> Option<(f32, usize)> {
    let rest = s.strip_prefix(':')?;
    let trimmed = rest.trim_start();
    let number_len = trimmed.char_indices().take_while(|&(i, c)| c.is_ascii_digit() || c == '.' || (i == 0 && (c == '+' || c == '-'))).map(|(i, c)| i + c.len_utf8()).last()?;
    let weight: f32 = trimmed[..number_len].parse().ok()?;
    if !weight.is_finite() {
        return None;
    }
    let after = trimmed[number_len..].trim_start();
    let after = after.strip_prefix(')')?;
    Some((weight, s.len() - after.len()))
}

fn tokenize(prompt: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut rest = prompt;
    let flush = |text: &mut String, tokens: &mut Vec<Token>| {
        if !text.is_empty() {
            tokens.push(Token::Text(std::mem::take(text)));
        }
    };
    while let Some(c) = rest.chars().next() {
        let mut used = c.len_utf8();
        match c {
            '\\' => match rest[1..].chars().next() {
                Some(e @ ('(' | ')' | '[' | ']' | '\\')) => {
                    text.push(e);
                    used = 2;
                }
                _ => text.push('\\'),
            },
            '(' | '[' => {
                flush(&mut text, &mut tokens);
                tokens.push(Token::Open(if c == '(' { Bracket::Round } else { Bracket::Square }));
            }
            ')' | ']' => {
                flush(&mut text, &mut tokens);
                let kind = if c == ')' { Bracket::Round } else { Bracket::Square };
                tokens.push(Token::Close { kind, weight: None, raw: c.to_string() });
            }
            ':' => match explicit_weight(rest) {
                Some((weight, len)) => {
                    flush(&mut text, &mut tokens);
                    used = len;
                    tokens.push(Token::Close { kind: Bracket::Round, weight: Some(weight), raw: rest[..len].to_string() });
                }
                None => text.push(':'),
            },
            _ => text.push(c),
        }
        rest = &rest[used..];
    }
    flush(&mut text, &mut tokens);
    tokens
}

/// Parses `prompt` into weighted fragments; adjacent fragments of equal weight are merged.
/// A prompt without weighting syntax gives one fragment with the prompt unchanged.
pub fn parse(prompt: &str) -> Vec<Fragment> {
    let tokens = tokenize(prompt);
    // Pair brackets: a close matches the innermost open of its kind only if that open is the
    // innermost open of any kind; everything unpaired becomes text.
    let mut multiplier: Vec<Option<f32>> = vec![None; tokens.len()];
    let mut stack: Vec<(usize, Bracket)> = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match token {
            Token::Open(kind) => stack.push((i, *kind)),
            Token::Close { kind, weight, .. } => {
                if let Some(&(open, open_kind)) = stack.last()
                    && open_kind == *kind
                {
                    stack.pop();
                    let m = weight.unwrap_or(if *kind == Bracket::Round { ROUND } else { SQUARE });
                    multiplier[open] = Some(m);
                    multiplier[i] = Some(m);
                }
            }
            Token::Text(_) => {}
        }
    }
    let mut fragments: Vec<Fragment> = Vec::new();
    let mut push = |text: &str, weight: f32| {
        if text.is_empty() {
            return;
        }
        match fragments.last_mut() {
            Some(last) if last.weight == weight => last.text.push_str(text),
            _ => fragments.push(Fragment { text: text.to_string(), weight }),
        }
    };
    let mut weights: Vec<f32> = Vec::new();
    // Nested weights multiply; each is finite, but their product need not be (an infinite one
    // would turn the image into NaN), and beyond ±MAX_WEIGHT no weight means anything.
    let current = |weights: &Vec<f32>| weights.iter().product::<f32>().clamp(-MAX_WEIGHT, MAX_WEIGHT);
    for (i, token) in tokens.iter().enumerate() {
        match (token, multiplier[i]) {
            (Token::Text(t), _) => push(t, current(&weights)),
            (Token::Open(_), Some(m)) => weights.push(m),
            (Token::Close { .. }, Some(_)) => {
                weights.pop();
            }
            (Token::Open(kind), None) => push(if *kind == Bracket::Round { "(" } else { "[" }, current(&weights)),
            (Token::Close { raw, .. }, None) => push(raw, current(&weights)),
        }
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(text: &str, weight: f32) -> Fragment {
        Fragment { text: text.into(), weight }
    }

    fn close(a: &[Fragment], b: &[Fragment]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.text == y.text && (x.weight - y.weight).abs() < 1e-6)
    }

    #[track_caller]
    fn check(prompt: &str, expected: &[Fragment]) {
        let got = parse(prompt);
        assert!(close(&got, expected), "{prompt:?}: got {got:?}, expected {expected:?}");
    }

    #[test]
    fn plain_prompts_are_one_fragment() {
        check("a photo of an astronaut, 4k", &[f("a photo of an astronaut, 4k", 1.0)]);
        check("ratio 16:9 and a: b", &[f("ratio 16:9 and a: b", 1.0)]);
        check("", &[]);
    }

    #[test]
    fn emphasis_and_nesting() {
        check("a (red) cat", &[f("a ", 1.0), f("red", 1.1), f(" cat", 1.0)]);
        check("a [red] cat", &[f("a ", 1.0), f("red", 1.0 / 1.1), f(" cat", 1.0)]);
        check("((red))", &[f("red", 1.21)]);
        check("((red:1000):1000) (blue:-1000)", &[f("red", MAX_WEIGHT), f(" ", 1.0), f("blue", -MAX_WEIGHT)]);
        check("[[red]]", &[f("red", 1.0 / 1.21)]);
        check("([red])", &[f("red", 1.0)]);
        check("(red:1.5) cat", &[f("red", 1.5), f(" cat", 1.0)]);
        check("(red: 0.5 )", &[f("red", 0.5)]);
        check("((red:1.5) car:0.5)", &[f("red", 0.75), f(" car", 0.5)]);
        check("(a (b) c)", &[f("a ", 1.1), f("b", 1.21), f(" c", 1.1)]);
        check("(a)(b)", &[f("ab", 1.1)]);
        check("(red:-1)", &[f("red", -1.0)]);
    }

    #[test]
    fn escapes_are_literal() {
        check(r"a \(b\) c", &[f("a (b) c", 1.0)]);
        check(r"\[x\] \\", &[f(r"[x] \", 1.0)]);
        check(r"(a \) b)", &[f("a ) b", 1.1)]);
        check(r"trailing \", &[f(r"trailing \", 1.0)]);
        check(r"\n stays", &[f(r"\n stays", 1.0)]);
    }

    #[test]
    fn unbalanced_brackets_are_text() {
        check("a (b c", &[f("a (b c", 1.0)]);
        check("a b) c", &[f("a b) c", 1.0)]);
        check("a ]b[", &[f("a ]b[", 1.0)]);
        check("(a]", &[f("(a]", 1.0)]);
        check("((a)", &[f("(", 1.0), f("a", 1.1)]);
        check("(a))", &[f("a", 1.1), f(")", 1.0)]);
        check("x:1.2) y", &[f("x:1.2) y", 1.0)]);
        check("[a:1.2)", &[f("[a:1.2)", 1.0)]);
        check("(a:1.2.3)", &[f("a:1.2.3", 1.1)]); // not a number: the colon is text
        check("(a:)", &[f("a:", 1.1)]);
        check("([a)]", &[f("(", 1.0), f("a)", 1.0 / 1.1)]);
    }

    #[test]
    fn never_panics_on_odd_input() {
        for p in ["(", ")", "[", "]", ":", ":)", "(:", "\\", "((((", "]]]]", "(é:1.2)", "日本(語)", "(:1e5)", "(a:+.5)", "(a:.)"] {
            let _ = parse(p);
        }
        check("日本(語:1.3)", &[f("日本", 1.0), f("語", 1.3)]);
    }
}

/// A1111's `<lora:name:weight>` in a prompt: which LoRA, at which weight (1 when left out).
#[derive(Clone, Debug, PartialEq)]
pub struct LoraTag {
    pub name: String,
    pub weight: f32,
}

/// Takes the `<lora:name:weight>` tags out of `prompt`: the text the text encoder sees, and the
/// LoRAs asked for (in order; the same name twice adds its weights, as A1111 does). A tag that
/// does not parse (`<lora:>`, `<lora:x:heavy>`) is an error naming it, not text.
pub fn lora_tags(prompt: &str) -> Result<(String, Vec<LoraTag>), String> {
    let mut text = String::with_capacity(prompt.len());
    let mut tags: Vec<LoraTag> = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("<lora:") {
        let Some(len) = rest[start..].find('>') else { break };
        let tag = &rest[start..start + len + 1];
        let inner = &tag["<lora:".len()..tag.len() - 1];
        let mut parts = inner.split(':');
        let name = parts.next().unwrap_or_default().trim();
        let weight = match parts.next() {
            Some(w) => w.trim().parse::<f32>().ok().filter(|w| w.is_finite()),
            None => Some(1.0),
        };
        let (Some(weight), false, None) = (weight, name.is_empty(), parts.next()) else {
            return Err(format!("{tag} is not a LoRA tag: write <lora:name> or <lora:name:0.8>"));
        };
        match tags.iter_mut().find(|t| t.name == name) {
            Some(t) => t.weight += weight,
            None => tags.push(LoraTag { name: name.to_string(), weight }),
        }
        text.push_str(&rest[..start]);
        rest = &rest[start + len + 1..];
    }
    text.push_str(rest);
    Ok((text, tags))
}

#[cfg(test)]
mod lora_tag_tests {
    use super::*;

    #[test]
    fn lora_tags_are_taken_out_of_the_prompt() {
        let (text, tags) = lora_tags("a fox <lora:pixel-art:0.8>, snow <lora:film> <lora:pixel-art:0.2>").unwrap();
        assert_eq!(text, "a fox , snow  ");
        assert_eq!(tags, [LoraTag { name: "pixel-art".into(), weight: 1.0 }, LoraTag { name: "film".into(), weight: 1.0 }]);
        assert_eq!(lora_tags("no tags (here:1.2) <b>").unwrap(), ("no tags (here:1.2) <b>".to_string(), vec![]));
        assert_eq!(lora_tags("<lora:x:heavy>").unwrap_err(), "<lora:x:heavy> is not a LoRA tag: write <lora:name> or <lora:name:0.8>");
        assert!(lora_tags("<lora::1>").is_err() && lora_tags("<lora:a:1:2>").is_err());
        assert_eq!(lora_tags("unclosed <lora:x").unwrap().0, "unclosed <lora:x");
    }
}
