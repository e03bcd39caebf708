//! `dtrain tokenize`: documents in, one token shard out.
//!
//! Inputs are read whole (a shard's worth of text fits in memory many times
//! over), validated as UTF-8 once, split into documents by format, and encoded in
//! parallel; every document is preceded by `<|endoftext|>` as in llm.c's fineweb
//! script. Errors name the input and the line (JSON) or byte offset (UTF-8).

use std::borrow::Cow;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use crate::tokenizer::Tokenizer;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{input}: line {line}: invalid JSON: {msg}")]
    Json {
        input: String,
        line: usize,
        msg: String,
    },
    #[error("{input}: line {line}: no string field \"text\"")]
    MissingText { input: String, line: usize },
    #[error(
        "{input}: invalid UTF-8 at byte offset {offset} (use --lossy to replace invalid bytes)"
    )]
    Utf8 { input: String, offset: usize },
    /// Text or lines mode given something that is plainly not prose.
    #[error("{input}: looks like {what}, not text; {hint}")]
    NotText {
        input: String,
        what: &'static str,
        hint: &'static str,
    },
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::Error),
    #[error(transparent)]
    Shard(#[from] crate::tokens::Error),
}

/// How input text is cut into documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line; its "text" field is a document.
    Jsonl,
    /// Paragraphs separated by blank lines are documents.
    Text,
    /// Every non-empty line is a document.
    Lines,
}

/// One named input's bytes.
pub struct Input {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// In text and lines mode: refuses input that is a token shard, binary, or
/// JSON lines (whose syntax would be tokenized as if it were prose).
fn check_prose(input: &Input) -> Result<(), Error> {
    let head = &input.bytes[..input.bytes.len().min(8192)];
    let not_text = |what, hint| {
        Err(Error::NotText {
            input: input.name.clone(),
            what,
            hint,
        })
    };
    if head.len() >= 4 && head[..4] == crate::tokens::MAGIC.to_le_bytes() {
        return not_text("a token shard", "it is tokenized already");
    }
    if head.contains(&0) {
        return not_text("binary data", "tokenize reads text, JSON lines or lines");
    }
    let first = head
        .split(|&b| b == b'\n')
        .find(|l| !l.trim_ascii().is_empty());
    let json_object = first.is_some_and(|l| {
        serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(l).is_ok()
    });
    if json_object {
        return not_text("JSON lines", "pass --format jsonl");
    }
    Ok(())
}

fn as_text<'a>(input: &'a Input, lossy: bool) -> Result<Cow<'a, str>, Error> {
    match std::str::from_utf8(&input.bytes) {
        Ok(s) => Ok(Cow::Borrowed(s)),
        Err(_) if lossy => Ok(String::from_utf8_lossy(&input.bytes)),
        Err(e) => Err(Error::Utf8 {
            input: input.name.clone(),
            offset: e.valid_up_to(),
        }),
    }
}

#[derive(serde::Deserialize)]
struct JsonDoc {
    text: Option<String>,
}

/// Cuts one input into documents.
pub fn documents(input: &Input, format: Format, lossy: bool) -> Result<Vec<String>, Error> {
    if format != Format::Jsonl {
        check_prose(input)?;
    }
    let text = as_text(input, lossy)?;
    Ok(match format {
        Format::Lines => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Format::Text => {
            let mut docs = Vec::new();
            let mut cur: Vec<&str> = Vec::new();
            for line in text.lines() {
                if line.trim().is_empty() {
                    if !cur.is_empty() {
                        docs.push(cur.join("\n"));
                        cur.clear();
                    }
                } else {
                    cur.push(line);
                }
            }
            if !cur.is_empty() {
                docs.push(cur.join("\n"));
            }
            docs
        }
        Format::Jsonl => {
            let lines: Vec<(usize, &str)> = text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
                .map(|(i, l)| (i + 1, l))
                .collect();
            lines
                .par_iter()
                .with_min_len(256)
                .map(|&(line, l)| {
                    let doc: JsonDoc = serde_json::from_str(l).map_err(|e| {
                        if e.is_data() {
                            Error::MissingText {
                                input: input.name.clone(),
                                line,
                            }
                        } else {
                            Error::Json {
                                input: input.name.clone(),
                                line,
                                msg: e.to_string(),
                            }
                        }
                    })?;
                    doc.text.ok_or_else(|| Error::MissingText {
                        input: input.name.clone(),
                        line,
                    })
                })
                .collect::<Result<_, _>>()?
        }
    })
}

/// What a tokenize run did (the `--json` line).
#[derive(Debug, Serialize)]
pub struct Summary {
    pub documents: usize,
    pub tokens: usize,
    pub bytes_in: usize,
    pub blake3: String,
    pub seconds: f64,
    pub mb_per_s: f64,
}

/// Tokenizes all inputs (documents in input order).
pub fn run(
    tok: &Tokenizer,
    inputs: &[Input],
    format: Format,
    lossy: bool,
) -> Result<(Vec<u16>, Summary), Error> {
    let t0 = Instant::now();
    let mut docs = Vec::new();
    for input in inputs {
        docs.extend(documents(input, format, lossy)?);
    }
    let bar = crate::progress::bytes_bar(docs.iter().map(|d| d.len() as u64).sum(), "tokenize");
    let tokens = tok.encode_docs_progress(&docs, &bar)?;
    bar.finish_and_clear();
    let seconds = t0.elapsed().as_secs_f64();
    let bytes_in: usize = inputs.iter().map(|i| i.bytes.len()).sum();
    let summary = Summary {
        documents: docs.len(),
        tokens: tokens.len(),
        bytes_in,
        blake3: crate::tokens::hash_of(&tokens)?.to_hex().to_string(),
        seconds,
        mb_per_s: bytes_in as f64 / 1e6 / seconds.max(1e-9),
    };
    Ok((tokens, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(s: &[u8]) -> Input {
        Input {
            name: "in".into(),
            bytes: s.to_vec(),
        }
    }

    #[test]
    fn formats_split_documents() {
        let t = b"a b\nc\n\n\n  \nd\n";
        assert_eq!(
            documents(&input(t), Format::Text, false).unwrap(),
            ["a b\nc", "d"]
        );
        assert_eq!(
            documents(&input(t), Format::Lines, false).unwrap(),
            ["a b", "c", "d"]
        );
        let j = b"{\"text\":\"x\",\"id\":1}\n\n{\"text\":\"y\"}\n";
        assert_eq!(
            documents(&input(j), Format::Jsonl, false).unwrap(),
            ["x", "y"]
        );
    }

    #[test]
    fn errors_name_line_and_offset() {
        let e = documents(
            &input(b"{\"text\":\"x\"}\n{\"txt\":1}\n"),
            Format::Jsonl,
            false,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "in: line 2: no string field \"text\"");
        let e =
            documents(&input(b"{\"text\":\"x\"}\n\n{oops\n"), Format::Jsonl, false).unwrap_err();
        assert!(e.to_string().starts_with("in: line 3: invalid JSON"), "{e}");
        let e = documents(&input(b"ok\xffno"), Format::Text, false).unwrap_err();
        assert!(e.to_string().contains("byte offset 2"), "{e}");
        assert_eq!(
            documents(&input(b"ok\xffno"), Format::Text, true).unwrap(),
            ["ok\u{fffd}no"]
        );
    }
}
