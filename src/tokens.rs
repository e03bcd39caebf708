//! Token shards in the llm.c / nanoGPT format.
//!
//! A shard is a header of 256 little-endian int32 (magic 20240520, version 1,
//! token count, the rest zero) followed by the tokens as little-endian uint16.
//! It is the format llm.c's fineweb script writes, so shards move freely between
//! dtrain and those tools. Readers memory-map the file and hand out `&[u16]`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::fsio::AtomicFile;

#[cfg(not(target_endian = "little"))]
compile_error!("dtrain maps little-endian files directly and needs a little-endian machine");

pub const MAGIC: i32 = 20240520;
pub const VERSION: i32 = 1;
pub const HEADER_INTS: usize = 256;
pub const HEADER_BYTES: usize = HEADER_INTS * 4;
/// The GPT-2 end-of-text token that precedes every document.
pub const EOT: u16 = 50256;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: too short for a token shard header ({len} bytes, need {HEADER_BYTES})")]
    TooShort { path: PathBuf, len: u64 },
    #[error("{path}: not a token shard (magic {found}, expected {MAGIC})")]
    BadMagic { path: PathBuf, found: i32 },
    #[error("{path}: unsupported token shard version {found} (expected {VERSION})")]
    BadVersion { path: PathBuf, found: i32 },
    #[error("{path}: header says {header} tokens but the file holds {actual}")]
    CountMismatch {
        path: PathBuf,
        header: i64,
        actual: u64,
    },
    #[error("too many tokens for one shard: {0} (the format's count is an int32)")]
    TooManyTokens(usize),
}

/// A memory-mapped token shard.
pub struct Shard {
    map: Option<Mmap>,
    len: usize,
}

impl Shard {
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        if size < HEADER_BYTES as u64 {
            return Err(Error::TooShort {
                path: path.to_path_buf(),
                len: size,
            });
        }
        // SAFETY: the file is opened read-only; dtrain replaces shards by rename, never in place.
        let map = unsafe { Mmap::map(&file) }.map_err(io_err)?;
        let len = check_header(&map, size, path)?;
        Ok(Self {
            map: if len == 0 { None } else { Some(map) },
            len,
        })
    }

    /// The tokens, borrowed from the mapping.
    pub fn tokens(&self) -> &[u16] {
        match &self.map {
            // SAFETY: the mapping is page aligned, the header is 1024 bytes, and
            // check_header verified that exactly `len` u16 follow it.
            Some(m) => unsafe {
                std::slice::from_raw_parts(m.as_ptr().add(HEADER_BYTES) as *const u16, self.len)
            },
            None => &[],
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn check_header(bytes: &[u8], size: u64, path: &Path) -> Result<usize, Error> {
    let int = |i: usize| i32::from_le_bytes(bytes[i * 4..i * 4 + 4].try_into().unwrap());
    let path = path.to_path_buf();
    let magic = int(0);
    if magic != MAGIC {
        return Err(Error::BadMagic { path, found: magic });
    }
    let version = int(1);
    if version != VERSION {
        return Err(Error::BadVersion {
            path,
            found: version,
        });
    }
    let count = int(2) as i64;
    let body = size - HEADER_BYTES as u64;
    if count < 0 || !body.is_multiple_of(2) || body / 2 != count as u64 {
        return Err(Error::CountMismatch {
            path,
            header: count,
            actual: body / 2,
        });
    }
    Ok(count as usize)
}

/// The 1024-byte header for `count` tokens.
pub fn header(count: usize) -> Result<[u8; HEADER_BYTES], Error> {
    let n = i32::try_from(count).map_err(|_| Error::TooManyTokens(count))?;
    let mut h = [0u8; HEADER_BYTES];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..12].copy_from_slice(&n.to_le_bytes());
    Ok(h)
}

/// Writes header and tokens to any writer (stdout, a socket).
pub fn write_to(mut w: impl Write, tokens: &[u16]) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: PathBuf::from("<output>"),
        source,
    };
    w.write_all(&header(tokens.len())?).map_err(io_err)?;
    // SAFETY: u16 has no padding; the machine is little-endian (checked above).
    let bytes =
        unsafe { std::slice::from_raw_parts(tokens.as_ptr() as *const u8, tokens.len() * 2) };
    w.write_all(bytes).map_err(io_err)?;
    w.flush().map_err(io_err)
}

/// Writes a shard atomically to `path`.
pub fn write_file(path: impl AsRef<Path>, tokens: &[u16]) -> Result<(), Error> {
    let path = path.as_ref();
    let io_err = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = AtomicFile::create(path).map_err(io_err)?;
    let mut w = io::BufWriter::with_capacity(1 << 20, f);
    write_to(&mut w, tokens)?;
    let f = w.into_inner().map_err(|e| io_err(e.into_error()))?;
    f.commit().map_err(io_err)
}

/// blake3 of the shard as it is written: the identity receipts record.
pub fn hash_of(tokens: &[u16]) -> Result<blake3::Hash, Error> {
    let mut h = blake3::Hasher::new();
    h.update(&header(tokens.len())?);
    // SAFETY: as in write_to.
    h.update(unsafe { std::slice::from_raw_parts(tokens.as_ptr() as *const u8, tokens.len() * 2) });
    Ok(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.bin");
        let toks: Vec<u16> = (0..1000u32).map(|i| (i * 37 % 50257) as u16).collect();
        write_file(&p, &toks).unwrap();
        let s = Shard::open(&p).unwrap();
        assert_eq!(s.tokens(), &toks[..]);
        assert_eq!(crate::fsio::hash_file(&p).unwrap(), hash_of(&toks).unwrap());
        // llm.c layout, byte for byte
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw.len(), 1024 + 2000);
        assert_eq!(&raw[0..4], &20240520i32.to_le_bytes());
        assert_eq!(&raw[8..12], &1000i32.to_le_bytes());
        assert_eq!(&raw[1024..1026], &toks[0].to_le_bytes());
    }

    #[test]
    fn empty_shard_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("e.bin");
        write_file(&p, &[]).unwrap();
        assert!(Shard::open(&p).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.bin");
        let mut raw = header(3).unwrap().to_vec();
        raw.extend_from_slice(&[0u8; 6]);

        let mut bad = raw.clone();
        bad[0] = 0;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(Shard::open(&p), Err(Error::BadMagic { .. })));

        let mut bad = raw.clone();
        bad[4] = 7;
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(
            Shard::open(&p),
            Err(Error::BadVersion { found: 7, .. })
        ));

        std::fs::write(&p, &raw[..raw.len() - 2]).unwrap();
        let err = Shard::open(&p).err().unwrap();
        assert!(
            matches!(
                err,
                Error::CountMismatch {
                    header: 3,
                    actual: 2,
                    ..
                }
            ),
            "{err}"
        );

        std::fs::write(&p, &raw[..100]).unwrap();
        assert!(matches!(Shard::open(&p), Err(Error::TooShort { .. })));

        std::fs::write(&p, &raw).unwrap();
        assert_eq!(Shard::open(&p).unwrap().len(), 3);
    }
}
