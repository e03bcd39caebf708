//! `push` and `pull`: checkpoints on the Hub, tagged by epoch.
//!
//! Push speaks the Hub's commit API: preupload (which files go to LFS), the LFS
//! batch API and a streamed PUT of each large file the server does not have yet
//! (sha256 oids), then one NDJSON commit holding every file (small ones inline,
//! base64), then the tag. Re-pushing a tag that already holds the same files
//! uploads nothing; a tag that holds other files is an error, never silently
//! moved. `file://DIR` publishes into a local hub folder with no server.
//!
//! Pull resolves a tag (or the highest numeric tag, as the seed's miners did),
//! downloads through hf-hub's cache under HF_HOME, checks every file's size and
//! hash against the tree listing, and swaps the folder into place atomically.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::client::{ClientError, HubClient};
use super::store::{self, Op, RepoId, RepoType, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Hub(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(
        "tag {tag} of {repo} already exists and holds other files ({what}); refusing to move it"
    )]
    TagConflict {
        repo: String,
        tag: String,
        what: String,
    },
    #[error("{repo} has no tag {tag}")]
    NoTag { repo: String, tag: String },
    #[error("{repo} has no numeric (epoch) tag")]
    NoEpochTag { repo: String },
    #[error("{path}: downloaded {got}, the repository lists {want}")]
    Corrupt {
        path: String,
        got: String,
        want: String,
    },
    #[error("{0} holds no files")]
    Empty(String),
    #[error("the hub answered unexpectedly: {0}")]
    Protocol(String),
}

/// path → (size, sha256 (LFS files), git oid) of a revision's files.
type RemoteFiles = BTreeMap<String, (u64, String, String)>;

/// One file of a checkpoint folder.
#[derive(Clone, Debug)]
struct LocalFile {
    rel: String,
    path: PathBuf,
    size: u64,
    sha256: String,
    git: String,
}

fn scan(dir: &Path) -> Result<Vec<LocalFile>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::Io(d.display().to_string(), e))? {
            let e = e.map_err(|e| Error::Io(d.display().to_string(), e))?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let (sha256, git, size) =
                    store::hash_pair(&p, p.metadata().map(|m| m.len() < 10 << 20).unwrap_or(true))
                        .map_err(|e| Error::Io(p.display().to_string(), e))?;
                let rel = p
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(LocalFile {
                    rel,
                    path: p,
                    size,
                    sha256,
                    git,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    if out.is_empty() {
        return Err(Error::Empty(dir.display().to_string()));
    }
    Ok(out)
}

/// What a push did.
#[derive(Debug, Serialize)]
pub struct PushSummary {
    pub repo: String,
    pub tag: String,
    pub commit: String,
    pub files: usize,
    pub bytes_uploaded: u64,
    /// Nothing was uploaded: the tag already held these files.
    pub unchanged: bool,
    pub seconds: f64,
}

impl PushSummary {
    /// The summary of a push of `files` files that uploaded `uploaded` bytes
    /// (`None`: the tag already held these files, nothing was committed).
    fn new(
        opts: &PushOptions,
        commit: String,
        files: usize,
        uploaded: Option<u64>,
        t0: Instant,
    ) -> Self {
        PushSummary {
            repo: opts.repo.into(),
            tag: opts.tag.into(),
            commit,
            files,
            bytes_uploaded: uploaded.unwrap_or(0),
            unchanged: uploaded.is_none(),
            seconds: t0.elapsed().as_secs_f64(),
        }
    }
}

pub struct PushOptions<'a> {
    pub repo: &'a str,
    pub tag: &'a str,
    pub revision: &'a str,
    pub message: &'a str,
    pub create: bool,
}

/// Compares a tag's files with the local ones: Ok(true) same, Ok(false) no such tag.
fn same_files(
    tag_files: Option<RemoteFiles>,
    files: &[LocalFile],
    repo: &str,
    tag: &str,
) -> Result<bool, Error> {
    let Some(remote) = tag_files else {
        return Ok(false);
    };
    for f in files {
        match remote.get(&f.rel) {
            Some((size, sha, git)) if *size == f.size && (sha == &f.sha256 || git == &f.git) => {}
            Some(_) => {
                return Err(Error::TagConflict {
                    repo: repo.into(),
                    tag: tag.into(),
                    what: format!("{} differs", f.rel),
                })
            }
            None => {
                return Err(Error::TagConflict {
                    repo: repo.into(),
                    tag: tag.into(),
                    what: format!("{} is missing there", f.rel),
                })
            }
        }
    }
    if remote.len() != files.len() {
        return Err(Error::TagConflict {
            repo: repo.into(),
            tag: tag.into(),
            what: format!(
                "it holds {} files, the folder {}",
                remote.len(),
                files.len()
            ),
        });
    }
    Ok(true)
}

/// Pushes a checkpoint folder to `repo` (a Hub repo id or file://DIR) and tags it.
pub fn push(dir: &Path, opts: &PushOptions, client: &HubClient) -> Result<PushSummary, Error> {
    let t0 = Instant::now();
    let files = scan(dir)?;
    if let Some((root, name)) = parse_local(opts.repo) {
        return push_local(&root, &name, &files, opts, t0);
    }
    let repo = RepoId::new(RepoType::Model, opts.repo)?;
    let env = &client.env;
    if opts.create {
        let (org, name) = opts
            .repo
            .split_once('/')
            .map(|(o, n)| (Some(o), n))
            .unwrap_or((None, opts.repo));
        let body = json!({"name": name, "organization": org, "type": "model", "private": false});
        match client.send_json(
            "POST",
            &format!("{}/api/repos/create", env.endpoint),
            "application/json",
            body.to_string().as_bytes(),
            opts.repo,
        ) {
            Ok(_) => {}
            Err(ClientError::Http { status: 409, .. }) => {} // exists already
            Err(e) => return Err(e.into()),
        }
    }
    // idempotency: does the tag exist, and with which files?
    let tag_files = remote_files(client, &repo, opts.tag)?;
    if same_files(tag_files, &files, opts.repo, opts.tag)? {
        let commit = resolve_commit(client, &repo, opts.tag)?;
        return Ok(PushSummary::new(opts, commit, files.len(), None, t0));
    }
    let rev = super::client::encode_path(opts.revision).replace('/', "%2F");
    // which files go through LFS
    let pre = json!({"files": files.iter().map(|f| {
        let mut sample = vec![0u8; f.size.min(512) as usize];
        if let Ok(mut h) = std::fs::File::open(&f.path) { let _ = h.read_exact(&mut sample); }
        json!({"path": f.rel, "size": f.size, "sample": base64::engine::general_purpose::STANDARD.encode(&sample)})
    }).collect::<Vec<_>>()});
    let modes = client.send_json(
        "POST",
        &client.api_url(&repo, &format!("preupload/{rev}")),
        "application/json",
        pre.to_string().as_bytes(),
        opts.repo,
    )?;
    let lfs: std::collections::HashSet<String> = modes["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["uploadMode"] == "lfs")
        .filter_map(|f| f["path"].as_str().map(str::to_string))
        .collect();
    // LFS: ask which objects the server lacks, upload those
    let lfs_files: Vec<&LocalFile> = files.iter().filter(|f| lfs.contains(&f.rel)).collect();
    let mut uploaded = 0u64;
    if !lfs_files.is_empty() {
        let batch_url = format!(
            "{}/{}{}.git/info/lfs/objects/batch",
            env.endpoint,
            repo.kind().prefix(),
            repo.name()
        );
        let req = json!({"operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
            "objects": lfs_files.iter().map(|f| json!({"oid": f.sha256, "size": f.size})).collect::<Vec<_>>()});
        let answer = client.send_json(
            "POST",
            &batch_url,
            "application/vnd.git-lfs+json",
            req.to_string().as_bytes(),
            opts.repo,
        )?;
        let total: u64 = lfs_files.iter().map(|f| f.size).sum();
        let bar = crate::progress::bytes_bar(total, "upload");
        for obj in answer["objects"].as_array().into_iter().flatten() {
            if let Some(err) = obj.get("error") {
                return Err(Error::Protocol(format!(
                    "LFS batch refused {}: {err}",
                    obj["oid"]
                )));
            }
            let oid = obj["oid"].as_str().unwrap_or_default();
            let Some(f) = lfs_files.iter().find(|f| f.sha256 == oid) else {
                continue;
            };
            let Some(upload) = obj["actions"].get("upload") else {
                bar.inc(f.size); // the server has it
                continue;
            };
            let href = upload["href"]
                .as_str()
                .ok_or_else(|| Error::Protocol("upload action without href".into()))?;
            let headers: Vec<(String, String)> = upload["header"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            client.put_file(href, &f.path, f.size, &headers, &bar)?;
            uploaded += f.size;
            if let Some(verify) = obj["actions"]
                .get("verify")
                .and_then(|v| v["href"].as_str())
            {
                client.send_json(
                    "POST",
                    verify,
                    "application/vnd.git-lfs+json",
                    json!({"oid": oid, "size": f.size}).to_string().as_bytes(),
                    opts.repo,
                )?;
            }
        }
        bar.finish_and_clear();
    }
    // one commit with every file
    let mut nd = Vec::new();
    let header = json!({"key": "header", "value": {"summary": opts.message, "description": ""}});
    nd.extend_from_slice(header.to_string().as_bytes());
    for f in &files {
        nd.push(b'\n');
        let line = if lfs.contains(&f.rel) {
            json!({"key": "lfsFile", "value": {"path": f.rel, "algo": "sha256", "oid": f.sha256, "size": f.size}})
        } else {
            let bytes =
                std::fs::read(&f.path).map_err(|e| Error::Io(f.path.display().to_string(), e))?;
            uploaded += bytes.len() as u64;
            json!({"key": "file", "value": {"path": f.rel, "encoding": "base64", "content": base64::engine::general_purpose::STANDARD.encode(bytes)}})
        };
        nd.extend_from_slice(line.to_string().as_bytes());
    }
    let answer = client.send_json(
        "POST",
        &client.api_url(&repo, &format!("commit/{rev}")),
        "application/x-ndjson",
        &nd,
        opts.repo,
    )?;
    let commit = answer["commitOid"]
        .as_str()
        .ok_or_else(|| Error::Protocol(format!("commit answer without commitOid: {answer}")))?
        .to_string();
    let tag_body = json!({"tag": opts.tag, "message": opts.message});
    match client.send_json(
        "POST",
        &client.api_url(&repo, &format!("tag/{commit}")),
        "application/json",
        tag_body.to_string().as_bytes(),
        opts.repo,
    ) {
        Ok(_) => {}
        Err(ClientError::Http { status: 409, .. }) => {
            // someone tagged meanwhile (or our earlier try did): fine only if it holds our files
            if !same_files(
                remote_files(client, &repo, opts.tag)?,
                &files,
                opts.repo,
                opts.tag,
            )? {
                return Err(Error::Protocol(format!("tag {} vanished", opts.tag)));
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(PushSummary::new(
        opts,
        commit,
        files.len(),
        Some(uploaded),
        t0,
    ))
}

/// (size, sha256, git oid) of every file at `rev`, or None if it does not exist.
fn remote_files(
    client: &HubClient,
    repo: &RepoId,
    rev: &str,
) -> Result<Option<RemoteFiles>, Error> {
    let refs: Value = match client.get_json(&client.api_url(repo, "refs"), &repo.to_string()) {
        Ok((v, _)) => v,
        Err(ClientError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let has = refs["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["name"] == rev);
    if !has {
        return Ok(None);
    }
    let tree = client.list_tree(repo, rev, "", true)?;
    Ok(Some(
        tree.into_iter()
            .filter(|e| e.kind == "file")
            .map(|e| {
                (
                    e.path.clone(),
                    (
                        e.size,
                        e.lfs.as_ref().map(|l| l.oid.clone()).unwrap_or_default(),
                        e.oid.clone(),
                    ),
                )
            })
            .collect(),
    ))
}

fn resolve_commit(client: &HubClient, repo: &RepoId, rev: &str) -> Result<String, Error> {
    let (info, _): (Value, _) = client.get_json(
        &client.api_url(
            repo,
            &format!("revision/{}", super::client::encode_path(rev)),
        ),
        &repo.to_string(),
    )?;
    // it names cache folders (hf-hub's snapshots/{commit}): only a git id will do
    let sha = info["sha"].as_str().unwrap_or_default();
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Protocol(format!(
            "{repo} at {rev}: the hub named commit '{}', which is not a 40-hex commit id",
            sha.chars().take(80).collect::<String>().escape_debug()
        )));
    }
    Ok(sha.to_string())
}

fn push_local(
    root: &Path,
    name: &str,
    files: &[LocalFile],
    opts: &PushOptions,
    t0: Instant,
) -> Result<PushSummary, Error> {
    let store = Store::open(root).map_err(|e| Error::Io(root.display().to_string(), e))?;
    let repo = RepoId::new(RepoType::Model, name)?;
    store.create_repo(&repo, true)?;
    // idempotency as for the Hub
    let existing = store
        .refs(&repo)
        .ok()
        .filter(|r| r.tags.contains_key(opts.tag))
        .and_then(|_| store.resolve(&repo, opts.tag).ok())
        .map(|r| {
            r.files
                .into_iter()
                .map(|(k, (e, _))| (k, (e.size, e.sha256, e.git)))
                .collect::<BTreeMap<_, _>>()
        });
    if same_files(existing, files, opts.repo, opts.tag)? {
        let commit = store.resolve(&repo, opts.tag)?.commit;
        return Ok(PushSummary::new(opts, commit, files.len(), None, t0));
    }
    let mut uploaded = 0;
    let mut ops = Vec::new();
    for f in files {
        if !store.has_object(&f.sha256, f.size) {
            let mut r = std::fs::File::open(&f.path)
                .map_err(|e| Error::Io(f.path.display().to_string(), e))?;
            store.put_object(&f.sha256, f.size, &mut r)?;
            uploaded += f.size;
        }
        ops.push(Op::PutObject {
            path: f.rel.clone(),
            sha256: f.sha256.clone(),
            size: f.size,
        });
    }
    let commit = store.commit(&repo, opts.revision, ops, None, opts.message)?;
    store.create_tag(&repo, opts.tag, &commit)?;
    Ok(PushSummary::new(
        opts,
        commit,
        files.len(),
        Some(uploaded),
        t0,
    ))
}

/// `file://ROOT/ORG/NAME` → (ROOT, "ORG/NAME"): a local hub folder and a repo in it.
pub fn parse_local(repo: &str) -> Option<(PathBuf, String)> {
    let path = Path::new(repo.strip_prefix("file://")?);
    let name = path.file_name()?.to_string_lossy().into_owned();
    let org_dir = path.parent()?;
    let org = org_dir.file_name()?.to_string_lossy().into_owned();
    Some((org_dir.parent()?.to_path_buf(), format!("{org}/{name}")))
}

/// What a pull did.
#[derive(Debug, Serialize)]
pub struct PullSummary {
    pub repo: String,
    pub tag: String,
    pub commit: String,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// The highest numeric tag of a repo (the seed's "latest epoch").
pub fn latest_epoch(client: &HubClient, repo: &str) -> Result<String, Error> {
    let tags: Vec<String> = if let Some((root, name)) = parse_local(repo) {
        let store = Store::open(&root).map_err(|e| Error::Io(root.display().to_string(), e))?;
        store
            .refs(&RepoId::new(RepoType::Model, &name)?)?
            .tags
            .into_keys()
            .collect()
    } else {
        let id = RepoId::new(RepoType::Model, repo)?;
        let (refs, _): (Value, _) = client.get_json(&client.api_url(&id, "refs"), repo)?;
        refs["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect()
    };
    tags.iter()
        .filter_map(|t| t.parse::<u64>().ok().map(|n| (n, t)))
        .max()
        .map(|(_, t)| t.clone())
        .ok_or_else(|| Error::NoEpochTag { repo: repo.into() })
}

/// Checks a downloaded file against the listing (sha256 for LFS files, git oid otherwise).
fn verify_file(path: &Path, rel: &str, size: u64, sha256: &str, git: &str) -> Result<(), Error> {
    let (s, g, n) = store::hash_pair(path, sha256.is_empty())
        .map_err(|e| Error::Io(path.display().to_string(), e))?;
    if n != size {
        return Err(Error::Corrupt {
            path: rel.into(),
            got: format!("{n} bytes"),
            want: format!("{size} bytes"),
        });
    }
    if !sha256.is_empty() && s != sha256 {
        return Err(Error::Corrupt {
            path: rel.into(),
            got: format!("sha256 {s}"),
            want: format!("sha256 {sha256}"),
        });
    }
    if sha256.is_empty() && !git.is_empty() && g != git {
        return Err(Error::Corrupt {
            path: rel.into(),
            got: format!("git oid {g}"),
            want: format!("git oid {git}"),
        });
    }
    Ok(())
}

/// Places `src` at `dst`: a hard link when possible, else a copy.
fn place(src: &Path, dst: &Path) -> Result<(), Error> {
    if let Some(p) = dst.parent() {
        std::fs::create_dir_all(p).map_err(|e| Error::Io(p.display().to_string(), e))?;
    }
    let real = std::fs::canonicalize(src).map_err(|e| Error::Io(src.display().to_string(), e))?;
    if std::fs::hard_link(&real, dst).is_err() {
        std::fs::copy(&real, dst).map_err(|e| Error::Io(dst.display().to_string(), e))?;
    }
    Ok(())
}

/// Downloads `tag` of `repo` into `dest` (atomically).
/// hf-hub's download progress, on a bar counting all the files' bytes.
struct BarProgress(indicatif::ProgressBar);

impl hf_hub::api::Progress for BarProgress {
    fn init(&mut self, _size: usize, _filename: &str) {}
    fn update(&mut self, size: usize) {
        self.0.inc(size as u64);
    }
    fn finish(&mut self) {}
}

pub fn pull(client: &HubClient, repo: &str, tag: &str, dest: &Path) -> Result<PullSummary, Error> {
    let t0 = Instant::now();
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::Io(parent.display().to_string(), e))?;
    }
    let out = crate::fsio::AtomicDir::create(dest)
        .map_err(|e| Error::Io(dest.display().to_string(), e))?;
    let (commit, files, bytes) = if let Some((root, name)) = parse_local(repo) {
        let store = Store::open(&root).map_err(|e| Error::Io(root.display().to_string(), e))?;
        let id = RepoId::new(RepoType::Model, &name)?;
        if !store.refs(&id)?.tags.contains_key(tag) {
            return Err(Error::NoTag {
                repo: repo.into(),
                tag: tag.into(),
            });
        }
        let rev = store.resolve(&id, tag)?;
        let mut bytes = 0;
        for (rel, (e, loc)) in &rev.files {
            if !store::valid_rel_path(rel) {
                return Err(Error::Protocol(format!(
                    "the manifest names the path '{}', which is not inside a repository",
                    rel.escape_debug()
                )));
            }
            let dst = out.path().join(rel);
            place(loc, &dst)?;
            verify_file(&dst, rel, e.size, &e.sha256, "")?;
            bytes += e.size;
        }
        (rev.commit, rev.files.len(), bytes)
    } else {
        let id = RepoId::new(RepoType::Model, repo)?;
        let (refs, _): (Value, _) = client.get_json(&client.api_url(&id, "refs"), repo)?;
        if !refs["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t["name"] == tag)
        {
            return Err(Error::NoTag {
                repo: repo.into(),
                tag: tag.into(),
            });
        }
        let commit = resolve_commit(client, &id, tag)?;
        let tree = client.list_tree(&id, &commit, "", true)?;
        let api = client
            .env
            .hf_api()
            .map_err(|e| Error::Protocol(e.to_string()))?;
        let r = api.repo(hf_hub::Repo::with_revision(
            repo.to_string(),
            hf_hub::RepoType::Model,
            commit.clone(),
        ));
        // the listing is the hub's word: every path must stay inside `dest`
        if let Some(bad) = tree.iter().find(|e| !store::valid_rel_path(&e.path)) {
            return Err(Error::Protocol(format!(
                "the listing names the path '{}', which is not inside a repository",
                bad.path.escape_debug()
            )));
        }
        let mut bytes = 0;
        let mut n = 0;
        let files = tree.iter().filter(|e| e.kind == "file");
        let bar = crate::progress::bytes_bar(files.clone().map(|e| e.size).sum(), "download");
        let cache = hf_hub::Cache::new(client.env.hub_cache()).repo(hf_hub::Repo::with_revision(
            repo.to_string(),
            hf_hub::RepoType::Model,
            commit.clone(),
        ));
        for e in files {
            let fetched = match cache.get(&e.path) {
                Some(path) => {
                    bar.inc(e.size);
                    Ok(path)
                }
                None => r.download_with_progress(&e.path, BarProgress(bar.clone())),
            };
            let cached = fetched.map_err(|err| match err {
                hf_hub::api::sync::ApiError::RequestError(ref re)
                    if re.to_string().contains("401") || re.to_string().contains("403") =>
                {
                    Error::Hub(ClientError::Auth {
                        url: e.path.clone(),
                        status: 401,
                    })
                }
                other => Error::Protocol(format!("{}: {other}", e.path)),
            })?;
            let sha = e.lfs.as_ref().map(|l| l.oid.as_str()).unwrap_or("");
            verify_file(&cached, &e.path, e.size, sha, &e.oid)?;
            place(&cached, &out.path().join(&e.path))?;
            bytes += e.size;
            n += 1;
        }
        (commit, n, bytes)
    };
    out.commit()
        .map_err(|e| Error::Io(dest.display().to_string(), e))?;
    Ok(PullSummary {
        repo: repo.into(),
        tag: tag.into(),
        commit,
        files,
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
