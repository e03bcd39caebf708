//! Gradient and checkpoint files: safetensors, memory-mapped.
//!
//! `reduce` and `train-step` need two things the usual "load everything into a
//! dict" API does not give: a read-only view of the whole data region as one flat
//! `&[f32]` (tensors lie back to back, so a byte span of the file is a span of the
//! model's parameters), and a writer that creates the file at its final size and
//! lets the producer fill it through a mutable mapping before it is renamed into
//! place. Header parsing and validation are the `safetensors` crate's; this module
//! adds the mapping, the flat view, dtrain's metadata keys and atomic writing.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use rayon::prelude::*;
use safetensors::tensor::Dtype as StDtype;

use crate::fsio::AtomicFile;

/// Where the data region starts is rounded up to this many bytes (header padded
/// with spaces, as the format allows), so the flat view is aligned for SIMD.
const DATA_ALIGN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Header { path: PathBuf, source: HeaderError },
    #[error("{path}: tensor {name} has dtype {dtype}; dtrain reads F32 and BF16")]
    Dtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("{path}: {what}")]
    NotFlat { path: PathBuf, what: String },
    #[error("{path}: metadata key '{key}' is missing")]
    MissingMeta { path: PathBuf, key: String },
    #[error("{path}: metadata key '{key}' has an invalid value '{value}'")]
    BadMeta {
        path: PathBuf,
        key: String,
        value: String,
    },
    #[error("{path}: tensor layout differs from {other}: {what}")]
    Layout {
        path: PathBuf,
        other: String,
        what: Box<LayoutDiff>,
    },
    #[error("no tensor named {0}")]
    NoTensor(String),
}

/// Element types dtrain writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    F32,
    BF16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::BF16 => "BF16",
        }
    }
}

/// A dtype name that is neither f32 nor bf16.
#[derive(Debug, thiserror::Error)]
#[error("unknown dtype '{0}' (f32 or bf16)")]
pub struct UnknownDType(pub String);

impl std::str::FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<Self, UnknownDType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            _ => Err(UnknownDType(s.to_string())),
        }
    }
}

/// Name, element type and shape of one tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: DType, shape: &[usize]) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn nbytes(&self) -> usize {
        self.numel() * self.dtype.size()
    }
}

/// One tensor of an open file: its spec and its byte range in the data region.
#[derive(Clone, Debug)]
pub struct Entry {
    pub spec: TensorSpec,
    pub range: Range<usize>,
}

/// A memory-mapped safetensors file.
pub struct TensorFile {
    path: PathBuf,
    map: Mmap,
    data_start: usize,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
}

impl TensorFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        // SAFETY: read-only mapping; dtrain replaces these files by rename, never in place.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let (n, meta) =
            safetensors::SafeTensors::read_metadata(&map).map_err(|e| Error::Format {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let mut entries = Vec::new();
        for name in meta.offset_keys() {
            let info = meta.info(&name).expect("name comes from the header");
            let dtype = match info.dtype {
                StDtype::F32 => DType::F32,
                StDtype::BF16 => DType::BF16,
                other => {
                    return Err(Error::Dtype {
                        path,
                        name,
                        dtype: format!("{other:?}"),
                    })
                }
            };
            entries.push(Entry {
                spec: TensorSpec {
                    name,
                    dtype,
                    shape: info.shape.clone(),
                },
                range: info.data_offsets.0..info.data_offsets.1,
            });
        }
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.spec.name.clone(), i))
            .collect();
        let metadata = meta
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        Ok(Self {
            path,
            map,
            data_start: 8 + n,
            entries,
            index,
            metadata,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensors in file (offset) order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn specs(&self) -> Vec<TensorSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    pub fn meta(&self, key: &str) -> Result<&str, Error> {
        self.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::MissingMeta {
                path: self.path.clone(),
                key: key.into(),
            })
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64, Error> {
        let v = self.meta(key)?;
        v.parse().map_err(|_| Error::BadMeta {
            path: self.path.clone(),
            key: key.into(),
            value: v.into(),
        })
    }

    /// The whole data region (all tensors, back to back).
    pub fn data(&self) -> &[u8] {
        &self.map[self.data_start..]
    }

    /// Total elements over all tensors.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|e| e.spec.numel()).sum()
    }

    /// The data region as one `&[f32]`; every tensor must be F32.
    pub fn flat_f32(&self) -> Result<&[f32], Error> {
        if let Some(e) = self.entries.iter().find(|e| e.spec.dtype != DType::F32) {
            return Err(Error::NotFlat {
                path: self.path.clone(),
                what: format!(
                    "tensor {} is {}, the flat view needs F32 throughout",
                    e.spec.name,
                    e.spec.dtype.name()
                ),
            });
        }
        cast_f32(self.data()).ok_or_else(|| Error::NotFlat {
            path: self.path.clone(),
            what: "data region is not 4-byte aligned (rewrite the file with dtrain)".into(),
        })
    }

    /// All tensors as f32 in file order, converting BF16 (borrowed when already F32).
    pub fn to_f32(&self) -> Result<std::borrow::Cow<'_, [f32]>, Error> {
        if let Ok(flat) = self.flat_f32() {
            return Ok(flat.into());
        }
        let mut out = Vec::with_capacity(self.numel());
        for e in &self.entries {
            out.extend_from_slice(&self.tensor_f32(&e.spec.name)?);
        }
        Ok(out.into())
    }

    pub fn entry(&self, name: &str) -> Result<&Entry, Error> {
        self.index
            .get(name)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| Error::NoTensor(name.into()))
    }

    /// Raw bytes of one tensor.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], Error> {
        let e = self.entry(name)?;
        Ok(&self.data()[e.range.clone()])
    }

    /// One tensor as f32 (borrowed when F32 and aligned, converted otherwise).
    pub fn tensor_f32(&self, name: &str) -> Result<std::borrow::Cow<'_, [f32]>, Error> {
        let e = self.entry(name)?;
        let bytes = &self.data()[e.range.clone()];
        Ok(match e.spec.dtype {
            DType::F32 => match cast_f32(bytes) {
                Some(s) => s.into(),
                None => bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect::<Vec<_>>()
                    .into(),
            },
            DType::BF16 => bytes
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect::<Vec<_>>()
                .into(),
        })
    }

    /// Checks that `other` has the same tensor names and shapes (dtype may differ).
    pub fn check_same_layout(&self, other: &TensorFile) -> Result<(), Error> {
        check_layout(&self.specs(), &other.specs()).map_err(|what| Error::Layout {
            path: self.path.clone(),
            other: other.path.display().to_string(),
            what: Box::new(what),
        })
    }
}

/// How two tensor layouts differ (the first difference).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutDiff {
    #[error("{want} tensors against {got}")]
    Count { want: usize, got: usize },
    #[error("tensor {got} where {want} was expected")]
    Name { want: String, got: String },
    #[error("tensor {name} has shape {got:?} against {want:?}")]
    Shape {
        name: String,
        want: Vec<usize>,
        got: Vec<usize>,
    },
}

/// Compares two layouts by name and shape, in order; says what differs.
pub fn check_layout(a: &[TensorSpec], b: &[TensorSpec]) -> Result<(), LayoutDiff> {
    if a.len() != b.len() {
        return Err(LayoutDiff::Count {
            want: a.len(),
            got: b.len(),
        });
    }
    for (x, y) in a.iter().zip(b) {
        if x.name != y.name {
            return Err(LayoutDiff::Name {
                want: x.name.clone(),
                got: y.name.clone(),
            });
        }
        if x.shape != y.shape {
            return Err(LayoutDiff::Shape {
                name: x.name.clone(),
                want: x.shape.clone(),
                got: y.shape.clone(),
            });
        }
    }
    Ok(())
}

fn cast_f32(bytes: &[u8]) -> Option<&[f32]> {
    if bytes.is_empty() {
        return Some(&[]);
    }
    if !(bytes.as_ptr() as usize).is_multiple_of(4) || !bytes.len().is_multiple_of(4) {
        return None;
    }
    // SAFETY: aligned, length a multiple of 4, every bit pattern is a valid f32,
    // and the machine is little-endian like the format.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const f32, bytes.len() / 4) })
}

/// The header bytes (length prefix included) for a layout and metadata.
///
/// Written by hand rather than through the crate's serializer because that one
/// emits `__metadata__` in hash-map order: dtrain needs the same bytes for the
/// same content (model identities and reduce results are file hashes). Keys:
/// `__metadata__` first (sorted), then tensors in data order.
pub fn header_bytes(
    specs: &[TensorSpec],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, HeaderError> {
    header_bytes_sized(specs, metadata, None)
}

/// Why a safetensors header cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("duplicate or reserved tensor name {0}")]
    Name(String),
    #[error("header of {need} bytes does not fit the {room} reserved")]
    Room { need: usize, room: usize },
}

/// As [`header_bytes`], padded to exactly `total` bytes when given (an error if
/// the header does not fit), so a header can be rewritten in place later.
pub fn header_bytes_sized(
    specs: &[TensorSpec],
    metadata: &BTreeMap<String, String>,
    total: Option<usize>,
) -> Result<Vec<u8>, HeaderError> {
    let mut obj = serde_json::Map::new();
    if !metadata.is_empty() {
        obj.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0;
    for s in specs {
        let n = s.nbytes();
        if s.name == "__metadata__" || obj.contains_key(&s.name) {
            return Err(HeaderError::Name(s.name.clone()));
        }
        obj.insert(
            s.name.clone(),
            serde_json::json!({"dtype": s.dtype.name(), "shape": s.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut json = serde_json::to_vec(&obj).expect("a JSON object of strings and numbers");
    let padded = match total {
        Some(t) if 8 + json.len() <= t => t - 8,
        Some(t) => {
            return Err(HeaderError::Room {
                need: 8 + json.len(),
                room: t,
            })
        }
        None => (8 + json.len()).next_multiple_of(DATA_ALIGN) - 8,
    };
    json.resize(padded, b' ');
    let mut out = Vec::with_capacity(8 + json.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

/// Creates a safetensors file at its final size, to be filled through a mutable
/// mapping and renamed into place by [`commit`](Self::commit).
pub struct TensorWriter {
    file: AtomicFile,
    map: Option<MmapMut>,
    data_start: usize,
    specs: Vec<TensorSpec>,
    offsets: Vec<usize>,
    reserved: bool,
}

/// Whether a new file's pages are mapped in when it is created.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pages {
    /// For writes through the mapping: no page faults while writing.
    MappedIn,
    /// For positional writes: pages come as the data is written.
    LeftOut,
}

impl TensorWriter {
    pub fn create(
        dest: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: &BTreeMap<String, String>,
    ) -> Result<Self, Error> {
        Self::create_with_room(dest, specs, metadata, 0)
    }

    /// Creates the file with `room` spare header bytes (rounded up to 4 KiB
    /// when non-zero), so [`rewrite_metadata`](Self::rewrite_metadata) can put
    /// longer metadata in later without moving the data.
    pub fn create_with_room(
        dest: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: &BTreeMap<String, String>,
        room: usize,
    ) -> Result<Self, Error> {
        Self::create_prepared(dest.as_ref(), specs, metadata, room, Pages::MappedIn)
    }

    /// As [`create_with_room`](Self::create_with_room) for a file whose data
    /// is written with positional writes ([`data_file`](Self::data_file)) as
    /// it arrives: its blocks are reserved but its pages are not mapped in,
    /// so no page is zero-filled only to be overwritten.
    pub fn create_for_pwrite(
        dest: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: &BTreeMap<String, String>,
        room: usize,
    ) -> Result<Self, Error> {
        Self::create_prepared(dest.as_ref(), specs, metadata, room, Pages::LeftOut)
    }

    fn create_prepared(
        dest: &Path,
        specs: &[TensorSpec],
        metadata: &BTreeMap<String, String>,
        room: usize,
        pages: Pages,
    ) -> Result<Self, Error> {
        let io_err = |source| Error::Io {
            path: dest.to_path_buf(),
            source,
        };
        let fmt_err = |source| Error::Header {
            path: dest.to_path_buf(),
            source,
        };
        let mut header = header_bytes(specs, metadata).map_err(fmt_err)?;
        if room > 0 {
            let total = (header.len() + room).next_multiple_of(4096);
            header = header_bytes_sized(specs, metadata, Some(total)).map_err(fmt_err)?;
        }
        let data_len: usize = specs.iter().map(TensorSpec::nbytes).sum();
        let mut file = AtomicFile::create(dest).map_err(io_err)?;
        file.file()
            .set_len((header.len() + data_len) as u64)
            .map_err(io_err)?;
        file.write_all(&header).map_err(io_err)?;
        let map = if data_len > 0 {
            // SAFETY: the temporary file is ours alone until commit renames it.
            Some(
                unsafe { memmap2::MmapOptions::new().offset(0).map_mut(file.file()) }
                    .map_err(io_err)?,
            )
        } else {
            None
        };
        let mut offsets = Vec::with_capacity(specs.len() + 1);
        let mut o = 0;
        for s in specs {
            offsets.push(o);
            o += s.nbytes();
        }
        offsets.push(o);
        let mut w = Self {
            file,
            map,
            data_start: header.len(),
            specs: specs.to_vec(),
            offsets,
            reserved: false,
        };
        w.reserved = w.preallocate(pages).map_err(io_err)?;
        Ok(w)
    }

    /// Whether the file's blocks were reserved (`fallocate`) and its pages
    /// mapped in at creation: false on file systems without fallocate, where
    /// writes through the mapping fault pages in one by one.
    pub fn reserved(&self) -> bool {
        self.reserved
    }

    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Replaces the metadata in the reserved header space.
    pub fn rewrite_metadata(&mut self, metadata: &BTreeMap<String, String>) -> Result<(), Error> {
        let header =
            header_bytes_sized(&self.specs, metadata, Some(self.data_start)).map_err(|source| {
                Error::Header {
                    path: self.file.dest().to_path_buf(),
                    source,
                }
            })?;
        match &mut self.map {
            Some(m) => m[..self.data_start].copy_from_slice(&header),
            None => {
                use std::io::{Seek, SeekFrom};
                let f = self.file.file();
                let mut f = f;
                f.seek(SeekFrom::Start(0))
                    .and_then(|_| f.write_all(&header))
                    .map_err(|source| Error::Io {
                        path: self.file.dest().to_path_buf(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// The whole data region, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        match &mut self.map {
            Some(m) => &mut m[self.data_start..],
            None => &mut [],
        }
    }

    /// The data region as `&mut [f32]`; every tensor must be F32.
    pub fn flat_f32_mut(&mut self) -> &mut [f32] {
        assert!(
            self.specs.iter().all(|s| s.dtype == DType::F32),
            "flat_f32_mut on a file that is not all F32"
        );
        let d = self.data_mut();
        // SAFETY: the mapping is page aligned and data_start a multiple of 64.
        unsafe { std::slice::from_raw_parts_mut(d.as_mut_ptr() as *mut f32, d.len() / 4) }
    }

    /// Bytes of tensor `i` (in spec order), writable.
    pub fn tensor_mut(&mut self, i: usize) -> &mut [u8] {
        let r = self.offsets[i]..self.offsets[i + 1];
        &mut self.data_mut()[r]
    }

    /// Reserves the file's blocks (`fallocate`) and, for [`Pages::MappedIn`],
    /// maps its pages in (`MADV_POPULATE_WRITE`) when the file is created, so that writes
    /// through the mapping take no page faults and cannot fail with SIGBUS on
    /// a full disk: a full disk is the creation's error instead. `Ok(false)`
    /// where the file system cannot reserve blocks.
    fn preallocate(&mut self, pages: Pages) -> io::Result<bool> {
        use std::os::fd::AsRawFd;
        let Some(map) = &mut self.map else {
            return Ok(true);
        };
        let len = map.len();
        // SAFETY: a valid descriptor; the range is the file's current size.
        let r = unsafe { libc::fallocate(self.file.file().as_raw_fd(), 0, 0, len as libc::off_t) };
        if r != 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
                _ => Err(e),
            };
        }
        if pages == Pages::MappedIn {
            // best effort (kernels before 5.14 refuse it): faults then happen on first write
            // SAFETY: the whole mapping, page aligned.
            unsafe {
                libc::madvise(map.as_mut_ptr().cast(), len, libc::MADV_POPULATE_WRITE);
            }
        }
        Ok(true)
    }

    /// A handle on the file being written and the byte offset of its data
    /// region, for positional writes (`pwrite`): where the file system could
    /// not reserve the blocks (see [`reserved`](Self::reserved)), they avoid
    /// faulting in zero-filled pages one by one through the mapping.
    pub fn data_file(&self) -> io::Result<(File, u64)> {
        Ok((self.file.file().try_clone()?, self.data_start as u64))
    }

    /// Renames the file into place without msync/fsync (see
    /// [`AtomicFile::commit_no_sync`]).
    pub fn commit_no_sync(mut self) -> Result<(), Error> {
        let path = self.file.dest().to_path_buf();
        drop(self.map.take());
        self.file
            .commit_no_sync()
            .map_err(|source| Error::Io { path, source })
    }

    /// Flushes the mapping, syncs and renames the file into place.
    pub fn commit(mut self) -> Result<(), Error> {
        let path = self.file.dest().to_path_buf();
        if let Some(m) = self.map.take() {
            m.flush().map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
        }
        self.file
            .commit()
            .map_err(|source| Error::Io { path, source })
    }
}

/// Writes tensors given as one flat f32 vector in spec order (see [`write_f32`]).
pub fn write_flat_f32(
    dest: impl AsRef<Path>,
    specs: &[TensorSpec],
    flat: &[f32],
    metadata: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let mut parts = Vec::with_capacity(specs.len());
    let mut at = 0;
    for s in specs {
        parts.push(&flat[at..at + s.numel()]);
        at += s.numel();
    }
    write_f32(dest, specs, &parts, metadata)
}

/// Writes tensors given as f32 slices (converted to each spec's dtype).
pub fn write_f32(
    dest: impl AsRef<Path>,
    specs: &[TensorSpec],
    data: &[&[f32]],
    metadata: &BTreeMap<String, String>,
) -> Result<(), Error> {
    let mut w = TensorWriter::create(dest, specs, metadata)?;
    for (i, (s, d)) in specs.iter().zip(data).enumerate() {
        assert_eq!(
            s.numel(),
            d.len(),
            "data for {} has the wrong length",
            s.name
        );
        let out = w.tensor_mut(i);
        match s.dtype {
            DType::F32 => {
                for (o, v) in out.chunks_exact_mut(4).zip(d.iter()) {
                    o.copy_from_slice(&v.to_le_bytes());
                }
            }
            DType::BF16 => {
                for (o, v) in out.chunks_exact_mut(2).zip(d.iter()) {
                    o.copy_from_slice(&half::bf16::from_f32(*v).to_le_bytes());
                }
            }
        }
    }
    w.commit()
}

/// The metadata every gradient file carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradMeta {
    /// blake3 hex of the model.safetensors the gradient was computed from.
    pub model: String,
    /// The averaging weight: how many sequences this gradient averages.
    pub sequences: u64,
    pub tokens: u64,
}

impl GradMeta {
    pub const MODEL: &'static str = "model";
    pub const SEQUENCES: &'static str = "sequences";
    pub const TOKENS: &'static str = "tokens";

    pub fn read(f: &TensorFile) -> Result<Self, Error> {
        let model = f.meta(Self::MODEL)?.to_string();
        if model.len() != 64 || !model.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadMeta {
                path: f.path.clone(),
                key: Self::MODEL.into(),
                value: model,
            });
        }
        Ok(Self {
            model,
            sequences: f.meta_u64(Self::SEQUENCES)?,
            tokens: f.meta_u64(Self::TOKENS)?,
        })
    }

    /// Adds the three keys to `map`.
    pub fn insert_into(&self, map: &mut BTreeMap<String, String>) {
        map.insert(Self::MODEL.into(), self.model.clone());
        map.insert(Self::SEQUENCES.into(), self.sequences.to_string());
        map.insert(Self::TOKENS.into(), self.tokens.to_string());
    }
}

/// Global L2 norm of a flat vector, summed in f64 over fixed blocks in order:
/// the same bits whatever the thread count.
pub fn l2_norm(x: &[f32]) -> f64 {
    sum_sq(x).sqrt()
}

pub fn sum_sq(x: &[f32]) -> f64 {
    const BLOCK: usize = 1 << 16;
    let partial: Vec<f64> = x
        .par_chunks(BLOCK)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum())
        .collect();
    partial.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<TensorSpec> {
        vec![
            TensorSpec::new("a.weight", DType::F32, &[3, 5]),
            TensorSpec::new("a.bias", DType::F32, &[5]),
            TensorSpec::new("b", DType::F32, &[7]),
        ]
    }

    #[test]
    fn writer_fills_through_mmap_and_reader_sees_flat_view() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.safetensors");
        let mut meta = BTreeMap::new();
        GradMeta {
            model: "ab".repeat(32),
            sequences: 12,
            tokens: 12 * 64,
        }
        .insert_into(&mut meta);
        let mut w = TensorWriter::create(&p, &specs(), &meta).unwrap();
        for (i, x) in w.flat_f32_mut().iter_mut().enumerate() {
            *x = i as f32 * 0.5;
        }
        assert!(!p.exists(), "nothing visible before commit");
        w.commit().unwrap();

        let f = TensorFile::open(&p).unwrap();
        let flat = f.flat_f32().unwrap();
        assert_eq!(flat.len(), 27);
        assert_eq!(flat[26], 13.0);
        assert_eq!(
            &*f.tensor_f32("a.bias").unwrap(),
            &[7.5, 8.0, 8.5, 9.0, 9.5]
        );
        assert_eq!(GradMeta::read(&f).unwrap().sequences, 12);
        assert_eq!(f.data().as_ptr() as usize % DATA_ALIGN, 0);
        // the independent parser agrees
        let bytes = std::fs::read(&p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("b").unwrap().shape(), &[7]);
    }

    #[test]
    fn same_content_gives_same_bytes() {
        let meta: BTreeMap<String, String> = (0..20)
            .map(|i| (format!("k{i}"), format!("v{i}")))
            .collect();
        let a = header_bytes(&specs(), &meta).unwrap();
        for _ in 0..5 {
            assert_eq!(header_bytes(&specs(), &meta).unwrap(), a);
        }
        // and the reference parser accepts it
        let data_len: usize = specs().iter().map(TensorSpec::nbytes).sum();
        let mut file = a.clone();
        file.resize(a.len() + data_len, 0);
        let (_, m) = safetensors::SafeTensors::read_metadata(&file).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["k13"], "v13");
    }

    #[test]
    fn new_files_have_their_blocks_reserved() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.safetensors");
        let specs = [TensorSpec::new("g", DType::F32, &[3 << 20])];
        // kept open (not committed) while its temporary file is inspected
        let w = TensorWriter::create(&p, &specs, &BTreeMap::new()).unwrap();
        assert!(w.reserved(), "this file system supports fallocate");
        // the temporary sibling holds the blocks before anything is written
        let tmp = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|e| e != &p)
            .expect("the temporary file");
        let m = std::fs::metadata(&tmp).unwrap();
        assert!(
            m.blocks() * 512 >= m.len(),
            "{} blocks for {} bytes",
            m.blocks(),
            m.len()
        );
    }

    /// A file that does not fit is refused when it is created, with ENOSPC,
    /// instead of a SIGBUS when the mapping is written (needs root for a
    /// small tmpfs; skipped otherwise).
    #[test]
    fn a_full_disk_is_an_error_at_creation_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("skipped: cannot mount a small tmpfs (not root?)");
            return;
        }
        let specs = [TensorSpec::new("g", DType::F32, &[1 << 20])];
        let r = TensorWriter::create(dir.path().join("g.safetensors"), &specs, &BTreeMap::new());
        let left = std::fs::read_dir(dir.path()).unwrap().count();
        std::process::Command::new("umount")
            .arg(dir.path())
            .status()
            .unwrap();
        match r {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}")
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("a 4 MiB file was created on a 1 MiB disk"),
        }
        assert_eq!(
            left, 0,
            "the failed creation left its temporary file behind"
        );
    }

    #[test]
    fn metadata_can_be_rewritten_in_reserved_room() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.safetensors");
        let mut w = TensorWriter::create_with_room(&p, &specs(), &BTreeMap::new(), 1000).unwrap();
        w.flat_f32_mut().fill(2.0);
        let meta: BTreeMap<String, String> =
            [("contributors".to_string(), "a,b,c".repeat(50))].into();
        w.rewrite_metadata(&meta).unwrap();
        w.commit().unwrap();
        let f = TensorFile::open(&p).unwrap();
        assert_eq!(f.metadata()["contributors"].len(), 250);
        assert!(f.flat_f32().unwrap().iter().all(|&x| x == 2.0));
        assert_eq!(f.data().as_ptr() as usize % 4096, 0);
    }

    #[test]
    fn bf16_is_converted_and_not_flat() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.safetensors");
        let s = vec![TensorSpec::new("x", DType::BF16, &[4])];
        write_f32(&p, &s, &[&[1.0, -2.0, 0.5, 3.0]], &BTreeMap::new()).unwrap();
        let f = TensorFile::open(&p).unwrap();
        assert!(f.flat_f32().is_err());
        assert_eq!(&*f.to_f32().unwrap(), &[1.0, -2.0, 0.5, 3.0]);
    }

    #[test]
    fn missing_metadata_and_layout_mismatch_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let q = dir.path().join("b.safetensors");
        let zeros = vec![0f32; 15];
        write_f32(&p, &specs()[..1], &[&zeros], &BTreeMap::new()).unwrap();
        let s2 = vec![TensorSpec::new("a.weight", DType::F32, &[5, 3])];
        write_f32(&q, &s2, &[&zeros], &BTreeMap::new()).unwrap();
        let (a, b) = (TensorFile::open(&p).unwrap(), TensorFile::open(&q).unwrap());
        let e = GradMeta::read(&a).unwrap_err().to_string();
        assert!(e.contains("'model' is missing"), "{e}");
        let e = a.check_same_layout(&b).unwrap_err().to_string();
        assert!(e.contains("shape [5, 3]"), "{e}");
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        std::fs::write(&p, b"\x10\0\0\0\0\0\0\0{not json at all").unwrap();
        assert!(matches!(TensorFile::open(&p), Err(Error::Format { .. })));
    }
}
