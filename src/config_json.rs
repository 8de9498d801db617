//! Config files as diffusers and transformers write them. Both use Python's json, which writes the
//! non-finite floats as bare `NaN`, `Infinity` and `-Infinity` (e.g. DPMSolverMultistepScheduler's
//! default `"lambda_min_clipped": -Infinity`), and diffusers' own converters write `null` for an
//! option left at its default (e.g. `"upcast_attention": null`). Every config websd reads goes
//! through here.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// Parses a config into `T`. A bare `NaN` / `Infinity` / `-Infinity` (outside strings) becomes
/// the string of that name: no key websd computes with may be non-finite, and the keys it only
/// checks or ignores keep a readable value. A key set to `null` takes `T`'s default, as in
/// diffusers, except the keys in `null_means_none`: options whose default is a value but whose
/// `None` means "none" (UNet's `mid_block_type`), which stay `null`.
pub fn parse<T: DeserializeOwned>(text: &str, what: &str, null_means_none: &[&str]) -> Result<T> {
    let mut value = parse_value(text, what)?;
    drop_nulls(&mut value, null_means_none);
    serde_json::from_value(value).map_err(|source| Error::Json { what: what.into(), source })
}

/// Parses a config as JSON, reading Python's non-finite floats as above.
pub fn parse_value(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(&quote_non_finite(text)).map_err(|source| Error::Json { what: what.into(), source })
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` outside strings as JSON strings.
fn quote_non_finite(text: &str) -> std::borrow::Cow<'_, str> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    if !TOKENS.iter().any(|t| text.contains(t)) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
            let ends_word = !rest[token.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
            let starts_word = !out.ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.');
            if starts_word && ends_word {
                out.push('"');
                out.push_str(token);
                out.push('"');
                rest = &rest[token.len()..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// Removes the `null` entries of every object (so serde's defaults apply), keeping `keep`.
fn drop_nulls(value: &mut Value, keep: &[&str]) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| !v.is_null() || keep.contains(&k.as_str()));
            map.values_mut().for_each(|v| drop_nulls(v, keep));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| drop_nulls(v, keep)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_non_finite_floats_are_read_outside_strings_only() {
        let v = parse_value(r#"{"a": -Infinity, "b": [NaN, Infinity], "c": "NaN -Infinity", "d": "x\"NaN", "e": 1e5}"#, "t").unwrap();
        assert_eq!(v["a"], "-Infinity");
        assert_eq!(v["b"], serde_json::json!(["NaN", "Infinity"]));
        assert_eq!(v["c"], "NaN -Infinity");
        assert_eq!(v["d"], "x\"NaN");
        assert_eq!(v["e"], 1e5);
        // Not a token: part of a longer word (invalid JSON stays invalid).
        assert!(parse_value(r#"{"a": NaNx}"#, "t").is_err());
        assert!(parse_value(r#"{"a": xNaN}"#, "t").is_err());
    }

    #[test]
    fn null_takes_the_default_except_where_none_means_none() {
        #[derive(serde::Deserialize)]
        struct C {
            #[serde(default)]
            flag: bool,
            #[serde(default = "some")]
            block: Option<String>,
            #[serde(default = "some")]
            kept: Option<String>,
        }
        fn some() -> Option<String> {
            Some("default".into())
        }
        let c: C = parse(r#"{"flag": null, "block": null, "kept": null}"#, "t", &["block"]).unwrap();
        assert!(!c.flag);
        assert_eq!(c.block, None);
        assert_eq!(c.kept.as_deref(), Some("default"));
        let err = parse::<C>(r#"{"flag": 3}"#, "my config", &[]).err().unwrap().to_string();
        assert!(err.contains("my config"), "{err}");
    }
}
