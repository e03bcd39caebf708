//! Atomic file and folder writes, and blake3 hashes of files.
//!
//! Every file dtrain produces goes through [`AtomicFile`] or [`AtomicDir`]: the
//! bytes are written to a temporary sibling (same folder, so the final rename is
//! atomic on POSIX file systems), synced, then renamed over the destination.
//! If the command fails half way the temporary is removed on drop, so a reader
//! never sees a partial gradient, shard or checkpoint, and an existing
//! destination stays as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A name for a temporary sibling of `dest` that no other process picks.
fn temp_sibling(dest: &Path, what: &str) -> io::Result<PathBuf> {
    let name = dest
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} has no file name", dest.display()),
            )
        })?
        .to_string_lossy()
        .into_owned();
    let mut rnd = [0u8; 6];
    getrandom::getrandom(&mut rnd).map_err(io::Error::other)?;
    let tag: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
    let parent = parent_of(dest);
    Ok(parent.join(format!(".{name}.{what}-{}-{tag}", std::process::id())))
}

/// Removes the temporaries that processes which have since died left in
/// `dir`: names `.{dest}.{tmp|tmpdir|old}-{pid}-{12 hex}` (see
/// [`temp_sibling`]) whose PID no longer runs. A SIGKILLed train-step leaves
/// its whole gradient behind; the next writer in that folder removes it. An
/// `old` folder (the previous checkpoint, moved aside) goes only once its
/// destination exists again.
pub fn sweep_dead_temporaries(dir: &Path) {
    // once per folder per process: a long-running writer (the hub's object
    // store) must not list its whole folder on every write
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|e| e.into_inner());
        if swept.iter().any(|d| d == dir) {
            return;
        }
        swept.push(dir.to_path_buf());
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(t) = name.to_str().and_then(TempName::parse) else {
            continue;
        };
        if t.pid == std::process::id() || pid_alive(t.pid) {
            continue;
        }
        if t.kind == "old" && !dir.join(t.dest).exists() {
            continue;
        }
        let path = e.path();
        let _ = if e.file_type().is_ok_and(|f| f.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// The parts of a temporary's name.
struct TempName<'a> {
    dest: &'a str,
    kind: &'a str,
    pid: u32,
}

impl<'a> TempName<'a> {
    fn parse(name: &'a str) -> Option<Self> {
        let rest = name.strip_prefix('.')?;
        let (head, tag) = rest.rsplit_once('-')?;
        if tag.len() != 12 || !tag.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let (head, pid) = head.rsplit_once('-')?;
        let pid = pid.parse().ok()?;
        let (dest, kind) = head.rsplit_once('.')?;
        matches!(kind, "tmp" | "tmpdir" | "old").then_some(TempName { dest, kind, pid })
    }
}

/// Whether a process with this PID exists (when in doubt, yes: keep its files).
fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return true;
    };
    if pid <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Best effort: make a rename durable by syncing the folder that holds it.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// A file written under a temporary name and renamed into place by [`commit`](Self::commit).
pub struct AtomicFile {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl AtomicFile {
    /// Creates the temporary file next to `dest`. The folder must exist.
    pub fn create(dest: impl AsRef<Path>) -> io::Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        folder_exists(&dest)?;
        sweep_dead_temporaries(&parent_of(&dest));
        let tmp = temp_sibling(&dest, "tmp")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        Ok(Self {
            tmp,
            dest,
            file: Some(file),
        })
    }

    /// The open temporary file (read/write), e.g. to `set_len` and mmap it.
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("file is open until commit")
    }

    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Syncs the data and renames the temporary over the destination.
    pub fn commit(mut self) -> io::Result<()> {
        let file = self.file.take().expect("file is open until commit");
        file.sync_all()?;
        drop(file);
        fs::rename(&self.tmp, &self.dest)?;
        sync_dir(&parent_of(&self.dest));
        Ok(())
    }

    /// Renames the temporary into place without syncing it first: for outputs
    /// that can be recreated (a reduce round's average). The rename is still
    /// atomic; after a crash the file may be missing, never half there.
    pub fn commit_no_sync(mut self) -> io::Result<()> {
        drop(self.file.take());
        fs::rename(&self.tmp, &self.dest)
    }

    /// Sets the permission bits of the file before it becomes visible.
    #[cfg(unix)]
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        self.file()
            .set_permissions(fs::Permissions::from_mode(mode))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .as_mut()
            .expect("file is open until commit")
            .write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file
            .as_mut()
            .expect("file is open until commit")
            .flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// An output's folder must exist: say which one does not (the OS says only
/// "No such file or directory").
fn folder_exists(dest: &Path) -> io::Result<()> {
    let folder = parent_of(dest);
    if folder.is_dir() {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("its folder {} does not exist", folder.display()),
    ))
}

/// Writes `bytes` to `dest` atomically.
pub fn write_atomic(dest: impl AsRef<Path>, bytes: &[u8]) -> io::Result<()> {
    let mut f = AtomicFile::create(dest)?;
    f.write_all(bytes)?;
    f.commit()
}

/// A folder (a checkpoint) built under a temporary name and swapped into place.
///
/// When the destination already exists it is moved aside, the new folder is
/// renamed in, and only then is the old one removed; a crash in between
/// leaves either the old or the new folder complete under a visible name.
pub struct AtomicDir {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl AtomicDir {
    pub fn create(dest: impl AsRef<Path>) -> io::Result<Self> {
        let dest = dest.as_ref().to_path_buf();
        folder_exists(&dest)?;
        sweep_dead_temporaries(&parent_of(&dest));
        let tmp = temp_sibling(&dest, "tmpdir")?;
        fs::create_dir(&tmp)?;
        Ok(Self {
            tmp,
            dest,
            done: false,
        })
    }

    /// The temporary folder to fill.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    pub fn commit(mut self) -> io::Result<()> {
        sync_dir(&self.tmp);
        if self.dest.exists() {
            let old = temp_sibling(&self.dest, "old")?;
            fs::rename(&self.dest, &old)?;
            if let Err(e) = fs::rename(&self.tmp, &self.dest) {
                let _ = fs::rename(&old, &self.dest);
                return Err(e);
            }
            let _ = fs::remove_dir_all(&old);
        } else {
            fs::rename(&self.tmp, &self.dest)?;
        }
        sync_dir(&parent_of(&self.dest));
        self.done = true;
        Ok(())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// blake3 of a file's bytes (memory-mapped, multi-threaded for large files).
pub fn hash_file(path: impl AsRef<Path>) -> io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    h.update_mmap_rayon(path)?;
    Ok(h.finalize())
}

/// blake3 of bytes already in memory, hex.
pub fn hash_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_file_commits_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        fs::write(&dest, b"old").unwrap();
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"half").unwrap();
            // dropped without commit: old content stays, no temp left behind
        }
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&dest, b"new").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn atomic_dir_replaces_existing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("ckpt");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("a"), b"1").unwrap();
        {
            let d = AtomicDir::create(&dest).unwrap();
            fs::write(d.path().join("b"), b"2").unwrap();
        }
        assert!(dest.join("a").exists());
        let d = AtomicDir::create(&dest).unwrap();
        fs::write(d.path().join("b"), b"2").unwrap();
        d.commit().unwrap();
        assert!(!dest.join("a").exists());
        assert_eq!(fs::read(dest.join("b")).unwrap(), b"2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn hash_matches_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, b"hello").unwrap();
        assert_eq!(
            hash_file(&p).unwrap().to_hex().to_string(),
            hash_hex(b"hello")
        );
    }
}

/// Why a JSON file another party wrote could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonFileError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: larger than {max} bytes", path.display())]
    TooLarge { path: PathBuf, max: u64 },
    #[error("{}: not a {kind}: {source}", path.display())]
    Malformed {
        path: PathBuf,
        kind: &'static str,
        source: serde_json::Error,
    },
}

/// Reads a JSON file another party wrote (a `kind`, e.g. "receipt"),
/// refusing one over `max` bytes before holding more than that in memory.
pub fn read_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    max: u64,
    kind: &'static str,
) -> Result<T, JsonFileError> {
    use std::io::Read as _;
    let path_buf = || path.to_path_buf();
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(max + 1).read_to_string(&mut text))
        .map_err(|source| JsonFileError::Io {
            path: path_buf(),
            source,
        })?;
    if text.len() as u64 > max {
        return Err(JsonFileError::TooLarge {
            path: path_buf(),
            max,
        });
    }
    serde_json::from_str(&text).map_err(|source| JsonFileError::Malformed {
        path: path_buf(),
        kind,
        source,
    })
}
