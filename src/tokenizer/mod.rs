//! GPT-2 tokenization into token shards.
//!
//! The miners' tokenizer is distilgpt2's, i.e. GPT-2's byte-level BPE (vocab
//! 50257, `<|endoftext|>` = 50256). Its vocab and merges are embedded, so
//! `dtrain tokenize` works offline with no flags.
//!
//! Tokenizing is the only CPU-heavy step of data preparation, so GPT-2-style BPE
//! tokenizers run on a dedicated engine: a hand-written pre-tokenizer
//! ([`pretok`]), BPE merges by pair rank (the semantics of Hugging Face's BPE
//! model), and a per-thread cache of pre-token → tokens (natural text repeats
//! its words, so most pre-tokens are looked up, not merged). Any other
//! `tokenizer.json` is run by the `tokenizers` crate. Text is always encoded as
//! ordinary text: a literal `<|endoftext|>` in a document is not the special token
//! (as in llm.c's fineweb script, which uses tiktoken's `encode_ordinary`).

pub mod pretok;

use std::collections::HashMap;
use std::path::Path;

use std::str::FromStr;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("tokenizer {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("tokenizer download failed: {0}")]
    Download(String),
    #[error("token id {0} does not fit the shard format's uint16")]
    IdTooLarge(u32),
    #[error("tokenizer failed: {0}")]
    Encode(String),
}

const VOCAB_JSON: &str = include_str!("gpt2/vocab.json");
const MERGES_TXT: &str = include_str!("gpt2/merges.txt");
pub const EOT_TEXT: &str = "<|endoftext|>";

/// GPT-2's byte ↔ printable-character table (`bytes_to_unicode`).
fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (b'!' as u32..=b'~' as u32).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
    }
    table
}

/// Byte-level BPE with GPT-2's pre-tokenizer.
pub struct Bpe {
    byte_token: [u32; 256],
    /// (left, right) → (rank, merged id)
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// id → raw bytes
    decoder: Vec<Vec<u8>>,
    eot: u32,
}

impl Bpe {
    /// The embedded GPT-2 / distilgpt2 tokenizer.
    pub fn gpt2() -> Self {
        let vocab: HashMap<String, u32> =
            serde_json::from_str(VOCAB_JSON).expect("embedded vocab.json is valid");
        let merges = MERGES_TXT
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.is_empty())
            .map(|l| {
                let (a, b) = l.split_once(' ').expect("embedded merges.txt is valid");
                (a.to_string(), b.to_string())
            });
        Self::from_parts(vocab, merges, "embedded").expect("embedded tokenizer is consistent")
    }

    /// From a byte-level vocab (printable-character form) and merges in rank order.
    pub fn from_parts(
        vocab: HashMap<String, u32>,
        merges: impl IntoIterator<Item = (String, String)>,
        origin: &str,
    ) -> Result<Self, Error> {
        let err = |reason: String| Error::Load {
            path: origin.to_string(),
            reason,
        };
        let b2c = byte_to_char();
        let mut c2b: HashMap<char, u8> = HashMap::new();
        for (b, c) in b2c.iter().enumerate() {
            c2b.insert(*c, b as u8);
        }
        let max_id = vocab.values().copied().max().unwrap_or(0) as usize;
        let mut decoder = vec![Vec::new(); max_id + 1];
        for (s, &id) in &vocab {
            decoder[id as usize] = if s == EOT_TEXT {
                s.as_bytes().to_vec()
            } else {
                s.chars()
                    .map(|c| {
                        c2b.get(&c)
                            .copied()
                            .ok_or_else(|| err(format!("vocab entry {s:?} is not byte-level")))
                    })
                    .collect::<Result<_, _>>()?
            };
        }
        let mut byte_token = [0u32; 256];
        for (b, c) in b2c.iter().enumerate() {
            byte_token[b] = *vocab
                .get(&c.to_string())
                .ok_or_else(|| err(format!("byte {b} has no token")))?;
        }
        let mut merge_map = FxHashMap::default();
        for (rank, (a, b)) in merges.into_iter().enumerate() {
            let ia = *vocab
                .get(&a)
                .ok_or_else(|| err(format!("merge part {a:?} not in vocab")))?;
            let ib = *vocab
                .get(&b)
                .ok_or_else(|| err(format!("merge part {b:?} not in vocab")))?;
            let m = *vocab
                .get(&format!("{a}{b}"))
                .ok_or_else(|| err(format!("merge result {a}{b:?} not in vocab")))?;
            merge_map.entry((ia, ib)).or_insert((rank as u32, m));
        }
        let eot = *vocab
            .get(EOT_TEXT)
            .ok_or_else(|| err(format!("no {EOT_TEXT} token")))?;
        Ok(Self {
            byte_token,
            merges: merge_map,
            decoder,
            eot,
        })
    }

    pub fn eot(&self) -> u32 {
        self.eot
    }

    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// BPE of one pre-token, appended to `out`.
    fn merge_piece(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut sym: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is
        // mergeable. Pre-tokens are short; the quadratic scan beats a heap there.
        loop {
            let mut best: Option<(u32, usize, u32)> = None;
            for i in 0..sym.len().saturating_sub(1) {
                if let Some(&(rank, id)) = self.merges.get(&(sym[i], sym[i + 1])) {
                    if best.is_none_or(|(r, _, _)| rank < r) {
                        best = Some((rank, i, id));
                    }
                }
            }
            let Some((_, i, id)) = best else { break };
            sym[i] = id;
            sym.remove(i + 1);
        }
        out.extend_from_slice(&sym);
    }

    /// Tokens of `text` (no EOT), using and filling `cache`.
    pub fn encode_with(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        pretok::split(text, |piece| {
            let bytes = piece.as_bytes();
            if let Some(toks) = cache.map.get(bytes) {
                out.extend_from_slice(toks);
                return;
            }
            let start = out.len();
            self.merge_piece(bytes, out);
            if cache.map.len() >= Cache::LIMIT {
                cache.map.clear();
            }
            cache.map.insert(bytes.into(), out[start..].into());
        });
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        self.encode_with(text, &mut Cache::default(), &mut out);
        out
    }

    pub fn decode(&self, ids: &[u32]) -> Vec<u8> {
        ids.iter()
            .flat_map(|&i| self.decoder.get(i as usize).cloned().unwrap_or_default())
            .collect()
    }
}

/// Pre-token → tokens, one per worker thread.
#[derive(Default)]
pub struct Cache {
    map: FxHashMap<Box<[u8]>, Box<[u32]>>,
}

impl Cache {
    const LIMIT: usize = 1 << 20;
}

/// A tokenizer: the fast GPT-2-style engine or any `tokenizer.json`.
pub enum Tokenizer {
    Bpe(Box<Bpe>),
    Hf {
        inner: Box<tokenizers::Tokenizer>,
        eot: u32,
    },
}

impl Tokenizer {
    pub fn gpt2() -> Self {
        Tokenizer::Bpe(Box::new(Bpe::gpt2()))
    }

    /// `PATH` (a tokenizer.json, or a folder holding one or vocab.json + merges.txt)
    /// or `hf:REPO` (tokenizer.json downloaded from the Hub through hf-hub).
    pub fn load(spec: &str) -> Result<Self, Error> {
        if let Some(repo) = spec.strip_prefix("hf:") {
            let api = crate::hub::HubEnv::from_env()
                .hf_api()
                .map_err(|e| Error::Download(e.to_string()))?;
            let path = api
                .model(repo.to_string())
                .get("tokenizer.json")
                .map_err(|e| Error::Download(format!("{repo}: {e}")))?;
            return Self::from_tokenizer_json(&path);
        }
        let p = Path::new(spec);
        if p.is_dir() {
            if p.join("vocab.json").exists() && p.join("merges.txt").exists() {
                return Self::from_vocab_merges(&p.join("vocab.json"), &p.join("merges.txt"));
            }
            return Self::from_tokenizer_json(&p.join("tokenizer.json"));
        }
        Self::from_tokenizer_json(p)
    }

    pub fn from_vocab_merges(vocab: &Path, merges: &Path) -> Result<Self, Error> {
        let origin = vocab.parent().unwrap_or(vocab).display().to_string();
        let err = |reason: String| Error::Load {
            path: origin.clone(),
            reason,
        };
        let v: HashMap<String, u32> =
            serde_json::from_str(&std::fs::read_to_string(vocab).map_err(|e| err(e.to_string()))?)
                .map_err(|e| err(format!("vocab.json: {e}")))?;
        let m = std::fs::read_to_string(merges).map_err(|e| err(e.to_string()))?;
        let pairs: Vec<(String, String)> = m
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                l.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| err(format!("bad merge line {l:?}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Tokenizer::Bpe(Box::new(Bpe::from_parts(
            v, pairs, &origin,
        )?)))
    }

    /// A tokenizer.json: GPT-2-style byte-level BPE goes to the fast engine,
    /// anything else to the `tokenizers` crate.
    pub fn from_tokenizer_json(path: &Path) -> Result<Self, Error> {
        let origin = path.display().to_string();
        let err = |reason: String| Error::Load {
            path: origin.clone(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if let Some((vocab, merges)) = gpt2_style(&json) {
            return Ok(Tokenizer::Bpe(Box::new(Bpe::from_parts(
                vocab, merges, &origin,
            )?)));
        }
        let inner = tokenizers::Tokenizer::from_str(&text).map_err(|e| err(e.to_string()))?;
        let eot = inner
            .token_to_id(EOT_TEXT)
            .ok_or_else(|| err(format!("no {EOT_TEXT} token")))?;
        Ok(Tokenizer::Hf {
            inner: Box::new(inner),
            eot,
        })
    }

    pub fn eot(&self) -> u32 {
        match self {
            Tokenizer::Bpe(b) => b.eot(),
            Tokenizer::Hf { eot, .. } => *eot,
        }
    }

    /// Tokenizes documents in parallel; each one is preceded by EOT. The order
    /// of the output is the order of `docs`.
    pub fn encode_docs<S: AsRef<str> + Sync>(&self, docs: &[S]) -> Result<Vec<u16>, Error> {
        self.encode_docs_progress(docs, &indicatif::ProgressBar::hidden())
    }

    /// As [`encode_docs`](Self::encode_docs), advancing `bar` by each document's bytes.
    pub fn encode_docs_progress<S: AsRef<str> + Sync>(
        &self,
        docs: &[S],
        bar: &indicatif::ProgressBar,
    ) -> Result<Vec<u16>, Error> {
        let eot = self.eot();
        let per_doc: Vec<Vec<u32>> = match self {
            Tokenizer::Bpe(bpe) => docs
                .par_iter()
                .with_min_len(16)
                .map_init(Cache::default, |cache, d| {
                    let mut out = vec![eot];
                    bpe.encode_with(d.as_ref(), cache, &mut out);
                    bar.inc(d.as_ref().len() as u64);
                    out
                })
                .collect(),
            Tokenizer::Hf { inner, .. } => docs
                .par_iter()
                .map(|d| {
                    let enc = inner
                        .encode(d.as_ref(), false)
                        .map_err(|e| Error::Encode(e.to_string()))?;
                    let mut out = vec![eot];
                    out.extend_from_slice(enc.get_ids());
                    bar.inc(d.as_ref().len() as u64);
                    Ok(out)
                })
                .collect::<Result<_, Error>>()?,
        };
        let total = per_doc.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(total);
        for d in per_doc {
            for id in d {
                out.push(u16::try_from(id).map_err(|_| Error::IdTooLarge(id))?);
            }
        }
        Ok(out)
    }
}

/// Vocab and merges of a tokenizer.json that is GPT-2's kind of tokenizer:
/// BPE model with a plain byte-level pre-tokenizer and no normalizer.
/// A byte-level vocab and its merges in rank order.
type VocabMerges = (HashMap<String, u32>, Vec<(String, String)>);

fn gpt2_style(json: &serde_json::Value) -> Option<VocabMerges> {
    let model = json.get("model")?;
    if model.get("type")?.as_str()? != "BPE" || !json.get("normalizer").is_none_or(|n| n.is_null())
    {
        return None;
    }
    if model.get("dropout").is_some_and(|d| !d.is_null())
        || model
            .get("continuing_subword_prefix")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
        || model
            .get("end_of_word_suffix")
            .and_then(|v| v.as_str())
            .is_some_and(|s| !s.is_empty())
    {
        return None;
    }
    let pre = json.get("pre_tokenizer")?;
    if pre.get("type")?.as_str()? != "ByteLevel"
        || pre
            .get("add_prefix_space")
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
        || !pre
            .get("use_regex")
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
    {
        return None;
    }
    let mut vocab: HashMap<String, u32> =
        serde_json::from_value(model.get("vocab")?.clone()).ok()?;
    for t in json
        .get("added_tokens")
        .and_then(|a| a.as_array())
        .into_iter()
        .flatten()
    {
        if let (Some(c), Some(id)) = (
            t.get("content").and_then(|v| v.as_str()),
            t.get("id").and_then(|v| v.as_u64()),
        ) {
            vocab.entry(c.to_string()).or_insert(id as u32);
        }
    }
    let merges = model
        .get("merges")?
        .as_array()?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => s
                .split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string())),
            serde_json::Value::Array(a) if a.len() == 2 => {
                Some((a[0].as_str()?.to_string(), a[1].as_str()?.to_string()))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((vocab, merges))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_gpt2_encodings() {
        let t = Bpe::gpt2();
        assert_eq!(t.vocab_size(), 50257);
        assert_eq!(t.eot(), 50256);
        // reference ids from GPT-2 (tiktoken "gpt2")
        assert_eq!(t.encode("Hello world"), [15496, 995]);
        assert_eq!(t.encode(" the"), [262]);
        let s = "It's 2024: naïve café — 日本語!\n\n  ok";
        assert_eq!(t.decode(&t.encode(s)), s.as_bytes());
    }

    #[test]
    fn docs_are_prefixed_with_eot_in_order() {
        let t = Tokenizer::gpt2();
        let toks = t.encode_docs(&["Hello world", "", " the"]).unwrap();
        assert_eq!(toks, [50256, 15496, 995, 50256, 50256, 262]);
    }
}
