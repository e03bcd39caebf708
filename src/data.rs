//! fineweb rows for a miner: listing, footers, deterministic assignment, and
//! ranged reads of just the `text` and `id` column chunks a miner needs.
//!
//! # The assignment (the "dataset indices" a validator re-derives)
//!
//! The config's parquet files, sorted by path, are concatenated into one row
//! space (row counts from their footers); global row g is row g − offset of
//! the file holding it. For N rows per miner the space is cut into
//! M = ⌊rows / N⌋ units of N consecutive rows (unit k = rows [kN, kN+N)).
//! Miner `uid` in an epoch gets unit π(uid), where π is a pseudo-random
//! permutation of [0, M): a 6-round Feistel network on ⌈log2 M⌉ bits (rounded
//! up to even) whose round function is keyed blake3, cycle-walked into [0, M).
//! The key is `blake3::derive_key("dtrain fetch-shard assignment v1", …)` over
//! repo, config, revision, the file list (paths and row counts), seed, epoch and
//! N. So the choice is a pure function of those inputs; π is a bijection, so
//! distinct uids in the same epoch get disjoint rows; and units land anywhere in
//! the corpus, spreading miners over files and row groups, while each miner's
//! rows are contiguous and touch as few row groups as possible (what makes
//! ranged reads cheap). A uid ≥ M is an error (no disjoint unit is left).
//!
//! The chosen rows are written as a data spec (JSON: the inputs, the file list
//! with row counts, and the row ranges); fetching by spec re-reads exactly those
//! rows.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::hub::client::{ClientError, HubClient};
use crate::hub::{RepoId, RepoType};
use crate::ranges::RangeList;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Hub(#[from] ClientError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: not a parquet file or a corrupt footer: {why}")]
    Footer { file: String, why: String },
    #[error("{file}: {why}")]
    Parquet { file: String, why: String },
    #[error("no parquet files under {0}")]
    NoFiles(String),
    #[error("the corpus has {rows} rows: fewer than the {n} requested")]
    TooFewRows { rows: u64, n: u64 },
    #[error("cannot hold out {n} rows of a corpus of {total}: at most half, at least one")]
    HeldOut { n: u64, total: u64 },
    #[error("uid {uid} has no disjoint slice: {units} slices of {n} rows exist (use fewer rows or uids)")]
    UidRange { uid: u64, units: u64, n: u64 },
    #[error("the data spec does not match the corpus: {0}")]
    SpecMismatch(String),
    #[error("invalid data spec {path}: {why}")]
    BadSpec { path: String, why: String },
    #[error("--rows must be at least 1")]
    NoRows,
    #[error(transparent)]
    Repo(#[from] crate::hub::store::StoreError),
}

/// fineweb config name → folder in the dataset repo.
pub fn config_dir(config: &str) -> String {
    if let Some(rest) = config.strip_prefix("sample-") {
        format!("sample/{rest}")
    } else if config == "default" {
        "data".into()
    } else if config.starts_with("CC-MAIN-") {
        format!("data/{config}")
    } else {
        config.trim_matches('/').to_string()
    }
}

/// A parquet file of the corpus.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FileRef {
    pub path: String,
    pub size: u64,
    #[serde(default)]
    pub etag: String,
}

/// Where the parquet files come from.
pub enum Source {
    Hub {
        client: HubClient,
        repo: RepoId,
        revision: String,
    },
    Local {
        dir: PathBuf,
        read: AtomicU64,
    },
}

impl Source {
    pub fn hub(client: HubClient, repo: &str, revision: &str) -> Result<Self, Error> {
        Ok(Source::Hub {
            client,
            repo: RepoId::new(RepoType::Dataset, repo)?,
            revision: revision.to_string(),
        })
    }

    /// A folder laid out like the dataset repo (or a hub root holding datasets/{repo}).
    pub fn local(dir: &Path, repo: &str) -> Self {
        let nested = dir.join("datasets").join(repo);
        let dir = if nested.is_dir() {
            nested
        } else {
            dir.to_path_buf()
        };
        Source::Local {
            dir,
            read: AtomicU64::new(0),
        }
    }

    pub fn bytes_fetched(&self) -> u64 {
        match self {
            Source::Hub { client, .. } => client.bytes_received(),
            Source::Local { read, .. } => read.load(Ordering::Relaxed),
        }
    }

    /// Parquet files under `dir`, sorted by path.
    pub fn list(&self, dir: &str) -> Result<Vec<FileRef>, Error> {
        let mut files = match self {
            Source::Hub {
                client,
                repo,
                revision,
            } => client
                .list_tree(repo, revision, dir, true)?
                .into_iter()
                .filter(|e| e.kind == "file" && e.path.ends_with(".parquet"))
                .map(|e| FileRef {
                    etag: e.etag().to_string(),
                    path: e.path,
                    size: e.size,
                })
                .collect::<Vec<_>>(),
            Source::Local { dir: root, .. } => {
                let mut v = Vec::new();
                let mut stack = vec![root.join(dir)];
                while let Some(d) = stack.pop() {
                    let rd = fs::read_dir(&d).map_err(|source| Error::Io {
                        path: d.display().to_string(),
                        source,
                    })?;
                    for e in rd.flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            stack.push(p);
                        } else if p.extension().is_some_and(|x| x == "parquet") {
                            let md = fs::metadata(&p).map_err(|source| Error::Io {
                                path: p.display().to_string(),
                                source,
                            })?;
                            let rel = p
                                .strip_prefix(root)
                                .unwrap()
                                .to_string_lossy()
                                .replace('\\', "/");
                            v.push(FileRef {
                                path: rel,
                                size: md.len(),
                                etag: String::new(),
                            });
                        }
                    }
                }
                v
            }
        };
        files.sort_by(|a, b| a.path.cmp(&b.path));
        if files.is_empty() {
            return Err(Error::NoFiles(dir.to_string()));
        }
        Ok(files)
    }

    /// Bytes [start, start+len) of a file.
    pub fn read(&self, file: &FileRef, start: u64, len: u64) -> Result<Vec<u8>, Error> {
        match self {
            Source::Hub {
                client,
                repo,
                revision,
            } => {
                let url = client.resolve_url(repo, revision, &file.path);
                Ok(client.get_range(&url, &format!("{repo}/{}", file.path), start, len)?)
            }
            Source::Local { dir, read } => {
                let p = dir.join(&file.path);
                let io = |source| Error::Io {
                    path: p.display().to_string(),
                    source,
                };
                let mut f = fs::File::open(&p).map_err(io)?;
                f.seek(SeekFrom::Start(start)).map_err(io)?;
                let mut buf = vec![0u8; len as usize];
                f.read_exact(&mut buf).map_err(io)?;
                read.fetch_add(len, Ordering::Relaxed);
                Ok(buf)
            }
        }
    }

    fn cache_dir(&self) -> Option<PathBuf> {
        match self {
            Source::Hub { client, repo, .. } => Some(
                client
                    .env
                    .home
                    .join("dtrain")
                    .join("footers")
                    .join(format!("datasets--{}", repo.name().replace('/', "--"))),
            ),
            Source::Local { .. } => None,
        }
    }
}

/// The speculative tail read that usually holds the whole footer in one
/// request: 1/64 of the file, between 8 KiB and 64 KiB (a miss costs a second
/// request for the rest).
fn tail_len(size: u64) -> u64 {
    (size / 64).clamp(8 * 1024, 64 * 1024).min(size)
}

/// A file's parsed footer.
pub struct Footer {
    pub file: FileRef,
    pub meta: Arc<ParquetMetaData>,
    pub rows: u64,
    /// Bytes this footer cost to fetch (0 when cached).
    pub fetched: u64,
}

/// Reads (or loads from the HF_HOME cache) and parses a file's footer.
pub fn read_footer(src: &Source, file: &FileRef) -> Result<Footer, Error> {
    let bad = |why: String| Error::Footer {
        file: file.path.clone(),
        why,
    };
    let cache = src.cache_dir().filter(|_| !file.etag.is_empty()).map(|d| {
        d.join(format!(
            "{}.{}.footer",
            file.path.replace('/', "--"),
            &file.etag[..file.etag.len().min(16)]
        ))
    });
    let (bytes, fetched) = match cache.as_ref().and_then(|c| fs::read(c).ok()) {
        Some(b) => (b, 0),
        None => {
            if file.size < 12 {
                return Err(bad(format!("{} bytes is too small", file.size)));
            }
            let tail_len = tail_len(file.size);
            let mut tail = src.read(file, file.size - tail_len, tail_len)?;
            let n = tail.len();
            if &tail[n - 4..] != b"PAR1" {
                return Err(bad("no PAR1 magic at the end".into()));
            }
            let meta_len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().unwrap()) as u64;
            if meta_len + 8 > file.size {
                return Err(bad(format!("footer length {meta_len} exceeds the file")));
            }
            let mut fetched = tail_len;
            if meta_len + 8 > tail_len {
                let extra = meta_len + 8 - tail_len;
                let mut front = src.read(file, file.size - tail_len - extra, extra)?;
                fetched += extra;
                front.extend_from_slice(&tail);
                tail = front;
            }
            let keep = tail.split_off(tail.len() - (meta_len as usize + 8));
            if let Some(c) = &cache {
                let _ = fs::create_dir_all(c.parent().unwrap());
                let _ = crate::fsio::write_atomic(c, &keep);
            }
            (keep, fetched)
        }
    };
    let n = bytes.len();
    if n < 8 || &bytes[n - 4..] != b"PAR1" {
        return Err(bad("cached footer is corrupt".into()));
    }
    let meta =
        ParquetMetaDataReader::decode_metadata(&bytes[..n - 8]).map_err(|e| bad(e.to_string()))?;
    let rows = meta.file_metadata().num_rows().max(0) as u64;
    Ok(Footer {
        file: file.clone(),
        meta: Arc::new(meta),
        rows,
        fetched,
    })
}

/// What `--seed/--epoch/--uid/--rows` select.
///
/// `held_out` rows at the end of the corpus are never assigned: they are the
/// validator's evaluation rows (`fetch-shard --eval`), so no miner ever trains
/// on what the model is measured on. With 0 (the default, and absent from the
/// spec) the assignment is exactly the one of specs written before it existed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub seed: u64,
    pub epoch: u64,
    pub uid: u64,
    pub rows: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_out: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The held-out evaluation rows: the corpus's last `n` rows.
pub fn held_out_rows(files: &[SpecFile], n: u64) -> Result<RangeList, Error> {
    let total: u64 = files.iter().map(|f| f.rows).sum();
    if n == 0 || n > total / 2 {
        return Err(Error::HeldOut { n, total });
    }
    Ok(RangeList(vec![(total - n, total)]))
}

/// Largest data spec file read.
pub const MAX_SPEC_BYTES: u64 = 16 << 20;

/// A data spec: enough to fetch exactly the same rows again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataSpec {
    pub version: u32,
    pub repo: String,
    pub config: String,
    pub revision: String,
    pub assignment: Option<Assignment>,
    /// The corpus files in order, with their row counts.
    pub files: Vec<SpecFile>,
    /// Global row indices, in output order.
    pub rows: RangeList,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SpecFile {
    pub path: String,
    pub rows: u64,
}

impl DataSpec {
    /// Reads a spec file (at most [`MAX_SPEC_BYTES`]: it may be another party's).
    pub fn read(path: &Path) -> Result<Self, Error> {
        use std::io::Read as _;
        let origin = path.display().to_string();
        let mut text = String::new();
        fs::File::open(path)
            .and_then(|f| f.take(MAX_SPEC_BYTES + 1).read_to_string(&mut text))
            .map_err(|e| Error::BadSpec {
                path: origin.clone(),
                why: e.to_string(),
            })?;
        if text.len() as u64 > MAX_SPEC_BYTES {
            return Err(Error::BadSpec {
                path: origin,
                why: format!("larger than {MAX_SPEC_BYTES} bytes"),
            });
        }
        Self::parse(&text, &origin)
    }

    /// Parses a spec's JSON; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let bad = |why: String| Error::BadSpec {
            path: origin.to_string(),
            why,
        };
        let spec: DataSpec = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if spec.version != 1 {
            return Err(bad(format!(
                "version {} (this dtrain reads version 1)",
                spec.version
            )));
        }
        // both name folders (the repo's cache, the config's parquet folder):
        // a spec is often another party's, so only plain names will do
        RepoId::new(RepoType::Dataset, &spec.repo).map_err(|e| bad(e.to_string()))?;
        let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
        if spec.config.is_empty() || spec.config.starts_with('.') || !spec.config.chars().all(plain)
        {
            return Err(bad(format!(
                "invalid config '{}'",
                spec.config.escape_debug()
            )));
        }
        Ok(spec)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("json") + "\n"
    }
}

fn feistel_key(
    repo: &str,
    config: &str,
    revision: &str,
    files: &[SpecFile],
    a: &Assignment,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("dtrain fetch-shard assignment v1");
    for part in [repo, config, revision] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.update(&(files.len() as u64).to_le_bytes());
    for f in files {
        h.update(&(f.path.len() as u64).to_le_bytes());
        h.update(f.path.as_bytes());
        h.update(&f.rows.to_le_bytes());
    }
    h.update(&a.seed.to_le_bytes());
    h.update(&a.epoch.to_le_bytes());
    h.update(&a.rows.to_le_bytes());
    if a.held_out > 0 {
        h.update(&a.held_out.to_le_bytes());
    }
    *h.finalize().as_bytes()
}

/// A keyed pseudo-random permutation of [0, m).
pub fn permute(x: u64, m: u64, key: &[u8; 32]) -> u64 {
    assert!(x < m);
    let bits = (64 - (m - 1).max(1).leading_zeros()).max(2);
    let bits = bits + (bits & 1);
    let half = bits / 2;
    let mask = (1u64 << half) - 1;
    let round = |i: u8, r: u64| {
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(&[i]);
        h.update(&r.to_le_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap()) & mask
    };
    let mut y = x;
    loop {
        let (mut l, mut r) = (y >> half, y & mask);
        for i in 0..6u8 {
            let nl = r;
            r = l ^ round(i, r);
            l = nl;
        }
        y = (l << half) | r;
        if y < m {
            return y;
        }
    }
}

/// The global rows `a` selects from a corpus with these files.
pub fn assign(
    repo: &str,
    config: &str,
    revision: &str,
    files: &[SpecFile],
    a: &Assignment,
) -> Result<RangeList, Error> {
    if a.rows == 0 {
        return Err(Error::NoRows);
    }
    let all: u64 = files.iter().map(|f| f.rows).sum();
    if a.held_out > 0 && a.held_out > all / 2 {
        return Err(Error::HeldOut {
            n: a.held_out,
            total: all,
        });
    }
    let total = all - a.held_out;
    let units = total / a.rows;
    if units == 0 {
        return Err(Error::TooFewRows {
            rows: total,
            n: a.rows,
        });
    }
    if a.uid >= units {
        return Err(Error::UidRange {
            uid: a.uid,
            units,
            n: a.rows,
        });
    }
    let k = permute(a.uid, units, &feistel_key(repo, config, revision, files, a));
    Ok(RangeList(vec![(k * a.rows, (k + 1) * a.rows)]))
}

/// One fetched row.
#[derive(Debug, Serialize)]
pub struct Row {
    pub row: u64,
    pub id: String,
    pub text: String,
}

/// Byte ranges held in memory, served to the parquet decoder as if they were
/// the whole file: it only ever asks for the column chunks we fetched.
struct Sparse {
    len: u64,
    pieces: Vec<(u64, Bytes)>,
}

impl Sparse {
    fn find(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        for (s, b) in &self.pieces {
            if start >= *s && start + len <= s + b.len() as u64 {
                let o = (start - s) as usize;
                return Ok(b.slice(o..o + len as usize));
            }
        }
        Err(parquet::errors::ParquetError::General(format!(
            "bytes {start}+{len} were not fetched"
        )))
    }
}

impl Length for Sparse {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for Sparse {
    type T = bytes::buf::Reader<Bytes>;
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let (s, b) = self
            .pieces
            .iter()
            .find(|(s, b)| start >= *s && start < s + b.len() as u64)
            .ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("byte {start} was not fetched"))
            })?;
        Ok(bytes::Buf::reader(b.slice((start - s) as usize..)))
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.find(start, length as u64)
    }
}

/// Column indices of `text` and `id`.
fn columns(meta: &ParquetMetaData, file: &str) -> Result<(usize, usize), Error> {
    let schema = meta.file_metadata().schema_descr();
    let find = |name: &str| {
        (0..schema.num_columns())
            .find(|&i| schema.column(i).path().string() == name)
            .ok_or_else(|| Error::Parquet {
                file: file.into(),
                why: format!("no column '{name}'"),
            })
    };
    Ok((find("text")?, find("id")?))
}

/// Summary of a fetch (`--json`).
#[derive(Debug, Default, Serialize)]
pub struct FetchStats {
    pub rows: u64,
    pub files: usize,
    pub row_groups: usize,
    /// Bytes received for footers and column chunks.
    pub bytes_fetched: u64,
    pub footer_bytes: u64,
    /// Compressed bytes of the text and id column chunks of the selected row groups.
    pub selected_bytes: u64,
    pub seconds: f64,
}

/// A fetched row group: (file, row group), its byte pieces, its selected bytes.
type FetchedGroup = ((usize, usize), Vec<(u64, Bytes)>, u64);

/// One row group's part of the selection.
struct Piece {
    file: usize,
    rg: usize,
    /// rows within the row group: [skip, skip + take)
    skip: u64,
    take: u64,
    first_global: u64,
}

/// The corpus as the fetcher sees it: files with parsed footers.
pub struct Corpus {
    pub footers: Vec<Footer>,
}

impl Corpus {
    /// Lists the config's files and reads every footer (in parallel).
    pub fn open(src: &Source, dir: &str) -> Result<Self, Error> {
        let files = src.list(dir)?;
        let footers = files
            .par_iter()
            .map(|f| read_footer(src, f))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { footers })
    }

    pub fn spec_files(&self) -> Vec<SpecFile> {
        self.footers
            .iter()
            .map(|f| SpecFile {
                path: f.file.path.clone(),
                rows: f.rows,
            })
            .collect()
    }

    /// Checks a spec's file list against the corpus.
    pub fn check(&self, spec: &DataSpec) -> Result<(), Error> {
        let ours = self.spec_files();
        if ours != spec.files {
            let why = match ours.iter().zip(&spec.files).find(|(a, b)| a != b) {
                Some((a, b)) => format!(
                    "{} has {} rows, the spec says {} has {}",
                    a.path, a.rows, b.path, b.rows
                ),
                None => format!("{} files, the spec lists {}", ours.len(), spec.files.len()),
            };
            return Err(Error::SpecMismatch(why));
        }
        Ok(())
    }

    fn pieces(&self, rows: &RangeList) -> Result<Vec<Piece>, Error> {
        let total: u64 = self.footers.iter().map(|f| f.rows).sum();
        let mut out = Vec::new();
        for &(s, e) in &rows.0 {
            if e > total {
                return Err(Error::SpecMismatch(format!(
                    "row {} is beyond the corpus' {total} rows",
                    e - 1
                )));
            }
            let mut g = s;
            let mut file_start = 0;
            for (fi, f) in self.footers.iter().enumerate() {
                let mut rg_start = file_start;
                for (ri, rg) in f.meta.row_groups().iter().enumerate() {
                    let n = rg.num_rows().max(0) as u64;
                    let (a, b) = (g.max(rg_start), e.min(rg_start + n));
                    if a < b && a == g {
                        out.push(Piece {
                            file: fi,
                            rg: ri,
                            skip: a - rg_start,
                            take: b - a,
                            first_global: a,
                        });
                        g = b;
                    }
                    rg_start += n;
                }
                file_start += f.rows;
            }
        }
        Ok(out)
    }

    /// Fetches the rows, in order; `emit` receives them as they are decoded.
    pub fn fetch(
        &self,
        src: &Source,
        rows: &RangeList,
        mut emit: impl FnMut(Row) -> std::io::Result<()>,
    ) -> Result<FetchStats, Error> {
        let t0 = std::time::Instant::now();
        let before = src.bytes_fetched();
        let pieces = self.pieces(rows)?;
        // one fetch per (file, row group): its text and id column chunks
        let mut groups: BTreeMap<(usize, usize), ()> = BTreeMap::new();
        for p in &pieces {
            groups.insert((p.file, p.rg), ());
        }
        let mut stats = FetchStats {
            footer_bytes: self.footers.iter().map(|f| f.fetched).sum(),
            ..Default::default()
        };
        let keys: Vec<(usize, usize)> = groups.keys().copied().collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(8)
            .build()
            .expect("thread pool");
        let fetched: Vec<FetchedGroup> = pool.install(|| {
            keys.par_iter()
                .map(|&(fi, ri)| {
                    let f = &self.footers[fi];
                    let (ti, ii) = columns(&f.meta, &f.file.path)?;
                    let rg = f.meta.row_group(ri);
                    let mut ranges: Vec<(u64, u64)> = [ti, ii]
                        .iter()
                        .map(|&c| rg.column(c).byte_range())
                        .collect();
                    ranges.sort();
                    let selected: u64 = ranges.iter().map(|r| r.1).sum();
                    // merge touching ranges into one request
                    let mut merged: Vec<(u64, u64)> = Vec::new();
                    for (s, l) in ranges {
                        match merged.last_mut() {
                            Some((ms, ml)) if *ms + *ml >= s => *ml = (*ml).max(s + l - *ms),
                            _ => merged.push((s, l)),
                        }
                    }
                    let mut pieces = Vec::new();
                    for (s, l) in merged {
                        pieces.push((s, Bytes::from(src.read(&f.file, s, l)?)));
                    }
                    Ok(((fi, ri), pieces, selected))
                })
                .collect::<Result<_, Error>>()
        })?;
        let mut data: BTreeMap<(usize, usize), Vec<(u64, Bytes)>> = BTreeMap::new();
        for (k, p, sel) in fetched {
            stats.selected_bytes += sel;
            data.insert(k, p);
        }
        stats.row_groups = data.len();
        stats.files = data
            .keys()
            .map(|k| k.0)
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        for p in &pieces {
            let f = &self.footers[p.file];
            let perr = |why: String| Error::Parquet {
                file: f.file.path.clone(),
                why,
            };
            let (ti, ii) = columns(&f.meta, &f.file.path)?;
            let sparse = Sparse {
                len: f.file.size,
                pieces: data[&(p.file, p.rg)].clone(),
            };
            let arm = ArrowReaderMetadata::try_new(f.meta.clone(), Default::default())
                .map_err(|e| perr(e.to_string()))?;
            let schema = f.meta.file_metadata().schema_descr();
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(sparse, arm)
                .with_row_groups(vec![p.rg])
                .with_projection(ProjectionMask::leaves(schema, [ti, ii]))
                .with_row_selection(RowSelection::from(vec![
                    RowSelector::skip(p.skip as usize),
                    RowSelector::select(p.take as usize),
                ]))
                .with_batch_size(1024)
                .build()
                .map_err(|e| perr(e.to_string()))?;
            let mut g = p.first_global;
            for batch in reader {
                let batch = batch.map_err(|e| perr(e.to_string()))?;
                let text = string_column(batch.column_by_name("text"))
                    .ok_or_else(|| perr("column text is not a string".into()))?;
                let id = string_column(batch.column_by_name("id"))
                    .ok_or_else(|| perr("column id is not a string".into()))?;
                for i in 0..batch.num_rows() {
                    emit(Row {
                        row: g,
                        id: id(i),
                        text: text(i),
                    })
                    .map_err(|source| Error::Io {
                        path: "<output>".into(),
                        source,
                    })?;
                    g += 1;
                    stats.rows += 1;
                }
            }
            if g != p.first_global + p.take {
                return Err(perr(format!(
                    "row group {} yielded {} rows, expected {}",
                    p.rg,
                    g - p.first_global,
                    p.take
                )));
            }
        }
        stats.bytes_fetched = src.bytes_fetched() - before + stats.footer_bytes;
        stats.seconds = t0.elapsed().as_secs_f64();
        Ok(stats)
    }
}

/// A string column (Utf8, LargeUtf8 or Utf8View) as an accessor.
fn string_column(a: Option<&arrow_array::ArrayRef>) -> Option<Box<dyn Fn(usize) -> String + '_>> {
    let a = a?;
    if let Some(s) = a.as_string_opt::<i32>() {
        return Some(Box::new(move |i| {
            if s.is_null(i) {
                String::new()
            } else {
                s.value(i).to_string()
            }
        }));
    }
    if let Some(s) = a.as_string_opt::<i64>() {
        return Some(Box::new(move |i| {
            if s.is_null(i) {
                String::new()
            } else {
                s.value(i).to_string()
            }
        }));
    }
    if let Some(s) = a.as_string_view_opt() {
        return Some(Box::new(move |i| {
            if s.is_null(i) {
                String::new()
            } else {
                s.value(i).to_string()
            }
        }));
    }
    None
}

/// Writes rows as JSON lines.
pub fn write_jsonl(w: &mut impl Write, row: &Row) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, row)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_only_plain_repos_and_configs() {
        let spec = |repo: &str, config: &str| {
            format!(
                r#"{{"version":1,"repo":"{repo}","config":"{config}","revision":"main","assignment":null,"files":[],"rows":""}}"#
            )
        };
        assert!(DataSpec::parse(&spec("HuggingFaceFW/fineweb", "sample-350BT"), "t").is_ok());
        for (repo, config) in [
            ("HuggingFaceFW/fineweb", "../.."),
            ("HuggingFaceFW/fineweb", "sample/350BT"),
            ("HuggingFaceFW/fineweb", ".hidden"),
            ("../../etc", "sample-350BT"),
            ("/abs/path", "sample-350BT"),
        ] {
            let e = DataSpec::parse(&spec(repo, config), "t")
                .unwrap_err()
                .to_string();
            assert!(e.contains("invalid"), "{repo} {config}: {e}");
        }
    }

    #[test]
    fn permutation_is_a_bijection() {
        let key = [7u8; 32];
        for m in [1u64, 2, 3, 10, 257, 1000] {
            let mut seen: Vec<u64> = (0..m).map(|x| permute(x, m, &key)).collect();
            seen.sort();
            assert_eq!(seen, (0..m).collect::<Vec<_>>(), "m = {m}");
        }
        let other: Vec<u64> = (0..1000).map(|x| permute(x, 1000, &[8u8; 32])).collect();
        let mine: Vec<u64> = (0..1000).map(|x| permute(x, 1000, &key)).collect();
        assert_ne!(other, mine);
    }

    #[test]
    fn assignments_are_disjoint_and_deterministic() {
        let files = vec![
            SpecFile {
                path: "a".into(),
                rows: 1000,
            },
            SpecFile {
                path: "b".into(),
                rows: 777,
            },
        ];
        let a = |uid, epoch| Assignment {
            seed: 1,
            epoch,
            uid,
            rows: 50,
            held_out: 0,
        };
        let r: Vec<RangeList> = (0..35)
            .map(|u| assign("r", "c", "main", &files, &a(u, 0)).unwrap())
            .collect();
        for i in 0..r.len() {
            for j in i + 1..r.len() {
                assert!(r[i].disjoint(&r[j]));
            }
        }
        assert_eq!(assign("r", "c", "main", &files, &a(3, 0)).unwrap(), r[3]);
        assert_ne!(
            assign("r", "c", "main", &files, &a(3, 1)).unwrap(),
            r[3],
            "epochs move miners"
        );
        assert!(matches!(
            assign("r", "c", "main", &files, &a(35, 0)),
            Err(Error::UidRange { units: 35, .. })
        ));
    }

    #[test]
    fn config_dirs() {
        assert_eq!(config_dir("sample-350BT"), "sample/350BT");
        assert_eq!(config_dir("default"), "data");
        assert_eq!(config_dir("CC-MAIN-2024-10"), "data/CC-MAIN-2024-10");
    }

    #[test]
    fn held_out_rows_are_never_assigned() {
        let files = vec![SpecFile {
            path: "a".into(),
            rows: 1000,
        }];
        let held = held_out_rows(&files, 100).unwrap();
        assert_eq!(held, RangeList(vec![(900, 1000)]));
        for uid in 0..9 {
            let a = Assignment {
                seed: 3,
                epoch: 2,
                uid,
                rows: 100,
                held_out: 100,
            };
            let r = assign("r", "c", "main", &files, &a).unwrap();
            assert!(r.disjoint(&held), "uid {uid} got held-out rows");
        }
        let tenth = Assignment {
            seed: 3,
            epoch: 2,
            uid: 9,
            rows: 100,
            held_out: 100,
        };
        assert!(assign("r", "c", "main", &files, &tenth).is_err());
        assert!(held_out_rows(&files, 501).is_err());
        // without held-out rows, specs written before the field keep their rows
        let old: Assignment =
            serde_json::from_str(r#"{"seed":3,"epoch":2,"uid":1,"rows":100}"#).unwrap();
        assert_eq!(old.held_out, 0);
        assert_eq!(
            serde_json::to_string(&old).unwrap(),
            r#"{"seed":3,"epoch":2,"uid":1,"rows":100}"#
        );
    }
}
