//! The local hub's storage.
//!
//! Layout under the root (the same one the issue names, so a folder of files
//! can be served as it is):
//!
//! ```text
//! {org}/{name}/…                      models: the files of `main`
//! datasets/{org}/{name}/…             datasets: the files of `main`
//! .dtrain-hub/objects/{sha256}         file contents, content-addressed
//! .dtrain-hub/repos/{models|datasets}/{org}/{name}/refs.json      branches and tags
//! .dtrain-hub/repos/…/commits/{id}.json                             one manifest per commit
//! .dtrain-hub/hashes.json             sha256/git-oid cache for plain files
//! ```
//!
//! A repository that was only ever a folder has one revision, `main`, whose
//! commit id is derived from its files. The first commit through the API imports
//! that state; from then on every commit is a manifest (path → sha256, size)
//! over the object store, `main`'s files are re-materialised in the folder
//! (hard links), and tags pin manifests, so old revisions stay downloadable.
//! A commit is all or nothing: its objects are checked before anything moves,
//! and refs.json is replaced atomically last.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha1::Digest as _;

use crate::fsio::write_atomic;

pub const META: &str = ".dtrain-hub";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RepoType {
    Model,
    Dataset,
}

impl RepoType {
    /// "models" / "datasets", as in `/api/{kind}/…`.
    pub fn api(self) -> &'static str {
        match self {
            RepoType::Model => "models",
            RepoType::Dataset => "datasets",
        }
    }

    pub fn from_api(s: &str) -> Option<Self> {
        match s {
            "models" | "model" => Some(RepoType::Model),
            "datasets" | "dataset" => Some(RepoType::Dataset),
            _ => None,
        }
    }

    /// URL / folder prefix: "" or "datasets/".
    pub fn prefix(self) -> &'static str {
        match self {
            RepoType::Model => "",
            RepoType::Dataset => "datasets/",
        }
    }
}

/// A repository's kind and name. The only way to make one is [`RepoId::new`],
/// which accepts `org/name` or a bare `name` whose parts are
/// `[A-Za-z0-9._-]`, start with no dot and are no `..`: every path the store
/// joins from a repo id therefore stays inside its folder, whichever route
/// (or client) the name came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoId {
    kind: RepoType,
    name: String,
}

/// Longest part of a repo id (the Hub allows 96 characters).
const MAX_REPO_PART: usize = 96;

impl RepoId {
    pub fn new(kind: RepoType, name: &str) -> Result<Self, StoreError> {
        let parts: Vec<&str> = name.split('/').collect();
        let part_ok = |p: &&str| {
            !p.is_empty()
                && p.len() <= MAX_REPO_PART
                && !p.starts_with('.')
                && !p.contains("..")
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if parts.len() > 2 || !parts.iter().all(part_ok) {
            return Err(StoreError::BadRepoId(name.chars().take(200).collect()));
        }
        Ok(Self {
            kind,
            name: name.to_string(),
        })
    }

    pub fn kind(&self) -> RepoType {
        self.kind
    }

    /// "org/name" (or a bare "name").
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// True for a sha256 written as 64 lowercase hex digits: the only object names
/// the store joins into a path.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repository {0} not found")]
    NoRepo(String),
    #[error("revision {0} not found")]
    NoRevision(String),
    #[error("{0} not found")]
    NoFile(String),
    #[error("repository {0} already exists")]
    RepoExists(String),
    #[error("tag {0} already exists")]
    TagExists(String),
    #[error("object {0} is not uploaded")]
    MissingObject(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "invalid repository id '{0}' (want org/name of [A-Za-z0-9._-], no leading dot, no '..')"
    )]
    BadRepoId(String),
    #[error("{0} is outside the hub's root")]
    Outside(String),
    #[error("parent commit {parent} is not the head of {branch} ({head})")]
    Conflict {
        parent: String,
        branch: String,
        head: String,
    },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One file of a revision.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    /// git blob id (sha1 of "blob {size}\0" + content)
    pub git: String,
    pub size: u64,
    /// Stored through LFS (large or binary).
    pub lfs: bool,
}

/// A revision: its commit id and files, and where each file's bytes are.
pub struct Revision {
    pub commit: String,
    pub files: BTreeMap<String, (FileEntry, PathBuf)>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Refs {
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub parent: Option<String>,
    pub message: String,
    pub files: BTreeMap<String, FileEntry>,
}

/// A change in a commit.
pub enum Op {
    /// A small file sent inline.
    Put {
        path: String,
        bytes: Vec<u8>,
    },
    /// A file already uploaded to the object store.
    PutObject {
        path: String,
        sha256: String,
        size: u64,
    },
    Delete {
        path: String,
    },
    DeleteFolder {
        path: String,
    },
}

#[derive(Clone, Serialize, Deserialize)]
struct CachedHash {
    size: u64,
    mtime_ns: u128,
    sha256: String,
    git: String,
}

/// Held while a commit, tag or repo creation runs (see [`Store::write_lock`]).
struct WriteLock<'a> {
    _guard: std::sync::MutexGuard<'a, ()>,
    _file: fs::File,
}

pub struct Store {
    /// Canonical (symlinks resolved).
    root: PathBuf,
    /// The hash cache.
    lock: Mutex<HashMap<String, CachedHash>>,
    /// Serialises writers (commits, tags, repo creation), held for the whole operation.
    writer: Mutex<()>,
}

/// Files at least this large, or with these extensions, are LFS files (as on the Hub).
fn is_lfs(path: &str, size: u64) -> bool {
    const EXT: [&str; 8] = [
        ".safetensors",
        ".parquet",
        ".bin",
        ".pt",
        ".pth",
        ".h5",
        ".arrow",
        ".gguf",
    ];
    size >= 10 * 1024 * 1024 || EXT.iter().any(|e| path.ends_with(e))
}

/// sha256 of a file and, when `want_git`, its git blob id (sha1 of
/// "blob {size}\0" + content), in one pass. (sha256 runs on SHA-NI; the
/// software sha1 is the slow one, so large files skip it: the Hub names LFS
/// files by their pointer's blob id, see [`lfs_pointer_oid`].)
pub fn hash_pair(path: &Path, want_git: bool) -> io::Result<(String, String, u64)> {
    let mut f = fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut s256 = sha2::Sha256::new();
    let mut s1 = sha1::Sha1::new();
    s1.update(format!("blob {size}\0").as_bytes());
    // a bounded buffer rather than a mapping: memory stays flat for any file size
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        s256.update(&buf[..n]);
        if want_git {
            s1.update(&buf[..n]);
        }
    }
    let git = if want_git {
        hex(&s1.finalize())
    } else {
        String::new()
    };
    Ok((hex(&s256.finalize()), git, size))
}

/// The git blob id of an LFS pointer file: what the Hub lists as an LFS file's oid.
pub fn lfs_pointer_oid(sha256: &str, size: u64) -> String {
    let pointer =
        format!("version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n");
    let mut s1 = sha1::Sha1::new();
    s1.update(format!("blob {}\0", pointer.len()).as_bytes());
    s1.update(pointer.as_bytes());
    hex(&s1.finalize())
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A path inside a repository: relative, no empty, `.` or `..` parts, nothing
/// under the store's own folder. Checked by the server for what it stores and
/// by clients for what a listing tells them to write.
pub fn valid_rel_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with(".dtrain-hub"))
        && !p.contains(['\\', '\0'])
}

impl Store {
    pub fn open(root: impl AsRef<Path>) -> io::Result<Self> {
        fs::create_dir_all(root.as_ref())?;
        // every path the store opens is checked against this, after symlinks
        let root = fs::canonicalize(root.as_ref())?;
        let cache = fs::read(root.join(META).join("hashes.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(Self {
            root,
            lock: Mutex::new(cache),
            writer: Mutex::new(()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` itself when it stays under the root once symlinks are followed
    /// (the deepest part of it that exists is resolved), else an error.
    fn inside(&self, path: PathBuf) -> Result<PathBuf, StoreError> {
        let mut existing = path.as_path();
        let resolved = loop {
            match fs::canonicalize(existing) {
                Ok(real) => break real,
                Err(_) => match existing.parent() {
                    Some(up) => existing = up,
                    None => return Err(StoreError::Outside(path.display().to_string())),
                },
            }
        };
        if resolved.starts_with(&self.root) {
            Ok(path)
        } else {
            Err(StoreError::Outside(path.display().to_string()))
        }
    }

    /// Holds the writer lock of this process and of every other process that
    /// opens the same root (`flock` on `.dtrain-hub/lock`): concurrent
    /// `file://` pushes and a server on the same folder never lose a tag.
    fn write_lock(&self) -> Result<WriteLock<'_>, StoreError> {
        let guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        fs::create_dir_all(self.root.join(META))?;
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join(META).join("lock"))?;
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock on a descriptor we own; released when `file` closes
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(WriteLock {
            _guard: guard,
            _file: file,
        })
    }

    fn tree_dir(&self, repo: &RepoId) -> Result<PathBuf, StoreError> {
        self.inside(self.root.join(repo.kind.prefix()).join(&repo.name))
    }

    fn meta_dir(&self, repo: &RepoId) -> Result<PathBuf, StoreError> {
        self.inside(
            self.root
                .join(META)
                .join("repos")
                .join(repo.kind.api())
                .join(&repo.name),
        )
    }

    fn objects(&self) -> PathBuf {
        self.root.join(META).join("objects")
    }

    /// Where an object's bytes are; only a well-formed sha256 names one.
    fn object_path(&self, sha256: &str) -> Result<PathBuf, StoreError> {
        if !is_sha256(sha256) {
            return Err(StoreError::Invalid(format!(
                "bad object id '{}' (want 64 lowercase hex digits)",
                sha256.chars().take(80).collect::<String>()
            )));
        }
        self.inside(self.objects().join(sha256))
    }

    pub fn has_object(&self, sha256: &str, size: u64) -> bool {
        self.object_path(sha256)
            .ok()
            .and_then(|p| fs::metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == size)
    }

    pub fn exists(&self, repo: &RepoId) -> bool {
        let refs = self.meta_dir(repo).map(|d| d.join("refs.json").exists());
        let tree = self.tree_dir(repo).map(|d| d.is_dir());
        refs.unwrap_or(false) || tree.unwrap_or(false)
    }

    fn read_refs(&self, repo: &RepoId) -> Option<Refs> {
        let b = fs::read(self.meta_dir(repo).ok()?.join("refs.json")).ok()?;
        serde_json::from_slice(&b).ok()
    }

    fn read_manifest(&self, repo: &RepoId, commit: &str) -> Option<Manifest> {
        if commit.len() != 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let b = fs::read(
            self.meta_dir(repo)
                .ok()?
                .join("commits")
                .join(format!("{commit}.json")),
        )
        .ok()?;
        serde_json::from_slice(&b).ok()
    }

    /// Hashes a plain file, using the cache when size and mtime are unchanged.
    fn cached_hash(&self, rel: &str, path: &Path) -> io::Result<FileEntry> {
        let md = fs::metadata(path)?;
        let mtime_ns = md
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = path
            .strip_prefix(&self.root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        {
            let cache = self.lock.lock().unwrap();
            if let Some(c) = cache
                .get(&key)
                .filter(|c| c.size == md.len() && c.mtime_ns == mtime_ns)
            {
                return Ok(FileEntry {
                    sha256: c.sha256.clone(),
                    git: c.git.clone(),
                    size: c.size,
                    lfs: is_lfs(rel, c.size),
                });
            }
        }
        let lfs = is_lfs(rel, md.len());
        let (sha256, content_git, size) = hash_pair(path, !lfs)?;
        let git = if lfs {
            lfs_pointer_oid(&sha256, size)
        } else {
            content_git
        };
        let mut cache = self.lock.lock().unwrap();
        cache.insert(
            key,
            CachedHash {
                size,
                mtime_ns,
                sha256: sha256.clone(),
                git: git.clone(),
            },
        );
        let _ = fs::create_dir_all(self.root.join(META));
        let _ = write_atomic(
            self.root.join(META).join("hashes.json"),
            &serde_json::to_vec(&*cache).unwrap(),
        );
        Ok(FileEntry {
            sha256,
            git,
            size,
            lfs: is_lfs(rel, size),
        })
    }

    /// The files of a plain folder (what `main` is before any API commit).
    fn folder_revision(&self, repo: &RepoId) -> Result<Revision, StoreError> {
        let dir = self.tree_dir(repo)?;
        let mut files = BTreeMap::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d)? {
                let e = e?;
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let p = e.path();
                let mut kind = e.file_type()?;
                if kind.is_symlink() {
                    // a link is served only when it points inside the root
                    if self.inside(p.clone()).is_err() {
                        continue;
                    }
                    kind = fs::metadata(&p)?.file_type();
                }
                if kind.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p
                        .strip_prefix(&dir)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/");
                    let entry = self.cached_hash(&rel, &p)?;
                    files.insert(rel, (entry, p));
                }
            }
        }
        let mut h = blake3::Hasher::new();
        for (k, (e, _)) in &files {
            h.update(k.as_bytes());
            h.update(&[0]);
            h.update(e.sha256.as_bytes());
        }
        let commit = h.finalize().to_hex()[..40].to_string();
        Ok(Revision { commit, files })
    }

    fn manifest_revision(&self, commit: &str, m: Manifest) -> Result<Revision, StoreError> {
        let mut files = BTreeMap::new();
        for (k, e) in m.files {
            let p = self.object_path(&e.sha256)?;
            files.insert(k, (e, p));
        }
        Ok(Revision {
            commit: commit.to_string(),
            files,
        })
    }

    /// Resolves a branch, tag or commit id.
    pub fn resolve(&self, repo: &RepoId, rev: &str) -> Result<Revision, StoreError> {
        match self.read_refs(repo) {
            Some(refs) => {
                let commit = refs
                    .branches
                    .get(rev)
                    .or_else(|| refs.tags.get(rev))
                    .cloned()
                    .or_else(|| self.read_manifest(repo, rev).map(|_| rev.to_string()))
                    .ok_or_else(|| StoreError::NoRevision(rev.to_string()))?;
                let m = self
                    .read_manifest(repo, &commit)
                    .ok_or_else(|| StoreError::NoRevision(rev.to_string()))?;
                self.manifest_revision(&commit, m)
            }
            None if self.tree_dir(repo)?.is_dir() => {
                let r = self.folder_revision(repo)?;
                if rev == "main" || rev == r.commit {
                    Ok(r)
                } else {
                    Err(StoreError::NoRevision(rev.to_string()))
                }
            }
            None => Err(StoreError::NoRepo(repo.to_string())),
        }
    }

    pub fn refs(&self, repo: &RepoId) -> Result<Refs, StoreError> {
        match self.read_refs(repo) {
            Some(r) => Ok(r),
            None if self.tree_dir(repo)?.is_dir() => {
                let r = self.folder_revision(repo)?;
                Ok(Refs {
                    branches: BTreeMap::from([("main".into(), r.commit)]),
                    tags: BTreeMap::new(),
                })
            }
            None => Err(StoreError::NoRepo(repo.to_string())),
        }
    }

    pub fn create_repo(&self, repo: &RepoId, exist_ok: bool) -> Result<(), StoreError> {
        let _w = self.write_lock()?;
        if self.read_refs(repo).is_some() || self.tree_dir(repo)?.is_dir() {
            return if exist_ok {
                Ok(())
            } else {
                Err(StoreError::RepoExists(repo.to_string()))
            };
        }
        fs::create_dir_all(self.tree_dir(repo)?)?;
        Ok(())
    }

    /// Stores an uploaded object after checking its size and sha256.
    pub fn put_object(
        &self,
        sha256: &str,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<(), StoreError> {
        let dest = self.object_path(sha256)?;
        fs::create_dir_all(self.objects())?;
        let mut tmp = crate::fsio::AtomicFile::create(dest)?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n_total = 0u64;
        loop {
            let n = body.read(&mut buf)?;
            if n == 0 {
                break;
            }
            n_total += n as u64;
            if n_total > size {
                // never store more than was announced
                return Err(StoreError::Invalid(format!(
                    "object {sha256}: more than the {size} bytes announced"
                )));
            }
            h.update(&buf[..n]);
            io::Write::write_all(&mut tmp, &buf[..n])?;
        }
        if n_total != size {
            return Err(StoreError::Invalid(format!(
                "object {sha256}: got {n_total} bytes, expected {size}"
            )));
        }
        let got = hex(&h.finalize());
        if got != sha256 {
            return Err(StoreError::Invalid(format!(
                "object content hashes to {got}, not {sha256}"
            )));
        }
        tmp.commit()?;
        Ok(())
    }

    /// Links (or copies) a file into the object store.
    fn import_object(&self, src: &Path, sha256: &str) -> Result<(), StoreError> {
        let dst = self.object_path(sha256)?;
        if dst.exists() {
            return Ok(());
        }
        fs::create_dir_all(self.objects())?;
        let tmp = self
            .objects()
            .join(format!(".{sha256}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        if fs::hard_link(src, &tmp).is_err() {
            fs::copy(src, &tmp)?;
        }
        Ok(fs::rename(&tmp, &dst)?)
    }

    /// Applies `ops` to `branch` as one commit; returns its id.
    pub fn commit(
        &self,
        repo: &RepoId,
        branch: &str,
        ops: Vec<Op>,
        parent: Option<&str>,
        message: &str,
    ) -> Result<String, StoreError> {
        let _w = self.write_lock()?;
        self.commit_locked(repo, branch, ops, parent, message)
    }

    fn commit_locked(
        &self,
        repo: &RepoId,
        branch: &str,
        ops: Vec<Op>,
        parent: Option<&str>,
        message: &str,
    ) -> Result<String, StoreError> {
        if !self.exists(repo) {
            return Err(StoreError::NoRepo(repo.to_string()));
        }
        // current head (importing a plain folder as the first commit)
        let (mut refs, head) = match self.read_refs(repo) {
            Some(r) => {
                let head = r.branches.get(branch).cloned();
                (r, head)
            }
            None => {
                let rev = self.folder_revision(repo)?;
                for (e, p) in rev.files.values() {
                    self.import_object(p, &e.sha256)?;
                }
                let files: BTreeMap<String, FileEntry> = rev
                    .files
                    .iter()
                    .map(|(k, (e, _))| (k.clone(), e.clone()))
                    .collect();
                let m = Manifest {
                    parent: None,
                    message: "import folder".into(),
                    files,
                };
                self.write_manifest(repo, &rev.commit, &m)?;
                (
                    Refs {
                        branches: BTreeMap::from([("main".into(), rev.commit.clone())]),
                        tags: BTreeMap::new(),
                    },
                    Some(rev.commit),
                )
            }
        };
        if let (Some(p), Some(h)) = (parent, &head) {
            if p != h {
                return Err(StoreError::Conflict {
                    parent: p.into(),
                    branch: branch.into(),
                    head: h.clone(),
                });
            }
        }
        let mut files = match &head {
            Some(h) => {
                self.read_manifest(repo, h)
                    .ok_or_else(|| StoreError::NoRevision(h.clone()))?
                    .files
            }
            None if branch == "main" || refs.branches.is_empty() => BTreeMap::new(),
            None => return Err(StoreError::NoRevision(branch.into())),
        };
        // check every op first: all or nothing
        for op in &ops {
            let path = match op {
                Op::Put { path, .. }
                | Op::PutObject { path, .. }
                | Op::Delete { path }
                | Op::DeleteFolder { path } => path,
            };
            if !valid_rel_path(path.trim_end_matches('/')) {
                return Err(StoreError::Invalid(format!("invalid path '{path}'")));
            }
            if let Op::PutObject { sha256, size, .. } = op {
                self.object_path(sha256)?;
                if !self.has_object(sha256, *size) {
                    return Err(StoreError::MissingObject(sha256.clone()));
                }
            }
        }
        for op in ops {
            match op {
                Op::Put { path, bytes } => {
                    let sha = hex(&sha2::Sha256::digest(&bytes));
                    let mut s1 = sha1::Sha1::new();
                    s1.update(format!("blob {}\0", bytes.len()).as_bytes());
                    s1.update(&bytes);
                    if !self.has_object(&sha, bytes.len() as u64) {
                        fs::create_dir_all(self.objects())?;
                        write_atomic(self.object_path(&sha)?, &bytes)?;
                    }
                    files.insert(
                        path,
                        FileEntry {
                            sha256: sha,
                            git: hex(&s1.finalize()),
                            size: bytes.len() as u64,
                            lfs: false,
                        },
                    );
                }
                Op::PutObject { path, sha256, size } => {
                    let git = lfs_pointer_oid(&sha256, size);
                    files.insert(
                        path,
                        FileEntry {
                            sha256,
                            git,
                            size,
                            lfs: true,
                        },
                    );
                }
                Op::Delete { path } => {
                    files.remove(&path);
                }
                Op::DeleteFolder { path } => {
                    let prefix = format!("{}/", path.trim_end_matches('/'));
                    files.retain(|k, _| !k.starts_with(&prefix));
                }
            }
        }
        let m = Manifest {
            parent: head.clone(),
            message: message.to_string(),
            files,
        };
        let body = serde_json::to_vec(&m).expect("json");
        let mut h = blake3::Hasher::new();
        h.update(&body);
        h.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
        let id = h.finalize().to_hex()[..40].to_string();
        self.write_manifest(repo, &id, &m)?;
        if branch == "main" {
            self.materialize(repo, &m)?;
        }
        refs.branches.insert(branch.to_string(), id.clone());
        self.write_refs(repo, &refs)?;
        Ok(id)
    }

    fn write_manifest(&self, repo: &RepoId, id: &str, m: &Manifest) -> Result<(), StoreError> {
        let dir = self.meta_dir(repo)?.join("commits");
        fs::create_dir_all(&dir)?;
        Ok(write_atomic(
            dir.join(format!("{id}.json")),
            &serde_json::to_vec_pretty(m).expect("json"),
        )?)
    }

    fn write_refs(&self, repo: &RepoId, refs: &Refs) -> Result<(), StoreError> {
        let dir = self.meta_dir(repo)?;
        fs::create_dir_all(&dir)?;
        Ok(write_atomic(
            dir.join("refs.json"),
            &serde_json::to_vec_pretty(refs).expect("json"),
        )?)
    }

    /// Makes the repo folder show `main`'s files (hard links into the objects).
    fn materialize(&self, repo: &RepoId, m: &Manifest) -> Result<(), StoreError> {
        let dir = self.tree_dir(repo)?;
        let new = crate::fsio::AtomicDir::create(&dir)?;
        for (path, e) in &m.files {
            let dst = new.path().join(path);
            fs::create_dir_all(dst.parent().unwrap_or(new.path()))?;
            let src = self.object_path(&e.sha256)?;
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst)?;
            }
        }
        Ok(new.commit()?)
    }

    pub fn create_tag(&self, repo: &RepoId, tag: &str, rev: &str) -> Result<String, StoreError> {
        if tag.is_empty()
            || tag.contains(char::is_whitespace)
            || tag.contains("..")
            || tag.starts_with('/')
        {
            return Err(StoreError::Invalid(format!("invalid tag name '{tag}'")));
        }
        let _w = self.write_lock()?;
        // make sure there is a refs.json to hold the tag
        if self.read_refs(repo).is_none() {
            self.commit_locked(repo, "main", vec![], None, "import folder")?;
        }
        let commit = self.resolve(repo, rev)?.commit;
        let mut refs = self.read_refs(repo).unwrap_or_default();
        if refs.tags.contains_key(tag) {
            return Err(StoreError::TagExists(tag.into()));
        }
        refs.tags.insert(tag.to_string(), commit.clone());
        self.write_refs(repo, &refs)?;
        Ok(commit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId::new(RepoType::Model, "org/m").unwrap()
    }

    #[test]
    fn folder_then_commits_then_tags() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("org/m/sub")).unwrap();
        fs::write(dir.path().join("org/m/a.txt"), b"hello").unwrap();
        fs::write(dir.path().join("org/m/sub/b.txt"), b"world").unwrap();
        let r0 = s.resolve(&repo(), "main").unwrap();
        assert_eq!(r0.files.len(), 2);
        assert_eq!(
            r0.files["a.txt"].0.git,
            "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
        ); // git hash-object
        let c1 = s
            .commit(
                &repo(),
                "main",
                vec![Op::Put {
                    path: "c.json".into(),
                    bytes: b"{}".to_vec(),
                }],
                None,
                "add c",
            )
            .unwrap();
        assert_eq!(s.resolve(&repo(), "main").unwrap().files.len(), 3);
        assert!(
            dir.path().join("org/m/c.json").exists(),
            "main is materialised"
        );
        s.create_tag(&repo(), "1", "main").unwrap();
        assert!(matches!(
            s.create_tag(&repo(), "1", "main"),
            Err(StoreError::TagExists(_))
        ));
        s.commit(
            &repo(),
            "main",
            vec![Op::Delete {
                path: "a.txt".into(),
            }],
            Some(&c1),
            "rm a",
        )
        .unwrap();
        assert_eq!(
            s.resolve(&repo(), "1").unwrap().files.len(),
            3,
            "the tag keeps its files"
        );
        assert_eq!(s.resolve(&repo(), "main").unwrap().files.len(), 2);
        assert!(matches!(
            s.commit(&repo(), "main", vec![], Some(&c1), "stale parent"),
            Err(StoreError::Conflict { .. })
        ));
        // nothing half-applied: a commit naming a missing object changes nothing
        let before = s.refs(&repo()).unwrap().branches["main"].clone();
        let r = s.commit(
            &repo(),
            "main",
            vec![Op::PutObject {
                path: "x".into(),
                sha256: "0".repeat(64),
                size: 3,
            }],
            None,
            "bad",
        );
        assert!(matches!(r, Err(StoreError::MissingObject(_))));
        assert_eq!(s.refs(&repo()).unwrap().branches["main"], before);
    }
}
