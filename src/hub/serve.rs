//! `dtrain hub serve`: the Hub's HTTP API over a folder.
//!
//! Speaks the subset of the Hugging Face Hub API that dtrain and the official
//! `huggingface_hub` client use: `resolve` downloads (HEAD, single Range with
//! 206/416, ETag, X-Repo-Commit, X-Linked-Size/Etag), the tree listing (paginated
//! with a Link header), refs, repo info; and the write side: repo creation,
//! preupload, the LFS batch API with its upload and verify URLs, NDJSON commits
//! and tags. With `--token` every request needs `Authorization: Bearer TOKEN`.
//!
//! It is the stand-in for the Hub in tests and in the offline demo, and a local
//! mirror for a cluster of miners. For tests it can misbehave on purpose
//! ([`Faults`]): answer 503 to every k-th request, drop every k-th connection
//! half way through a body, or answer slowly.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::http::{parse_range, write_response, Body, Conn, Request, Response};
use super::store::{FileEntry, Op, RepoId, RepoType, Store, StoreError};

/// Deliberate misbehaviour, for tests of clients' retries.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer 503 to every k-th request.
    pub fail_every: Option<u64>,
    /// Cut every k-th request: half a response body (or half an upload read), then close.
    pub drop_every: Option<u64>,
    /// Wait this long before each response.
    pub slow_ms: u64,
    /// Answer 503 to the first n requests.
    pub fail_first: u64,
}

pub struct Options {
    /// The admin token: reads and writes every repository.
    pub token: Option<String>,
    /// Writers' tokens, each allowed to write only its own repositories.
    pub writers: Vec<Writer>,
    pub faults: Faults,
    pub limits: Limits,
}

/// A token that may read everything and write the repositories it names.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writer {
    /// Who holds it (for logs).
    pub name: String,
    pub token: String,
    /// Repository ids (`org/name`, models or datasets) or `org/*` for all of an org's.
    pub write: Vec<String>,
}

impl Writer {
    fn may_write(&self, repo: &RepoId) -> bool {
        let name = repo.name();
        self.write.iter().any(|w| match w.strip_suffix("/*") {
            Some(org) => name.split_once('/').is_some_and(|(o, _)| o == org),
            None => w == name,
        })
    }
}

/// The writers file (`hub serve --tokens FILE`): `[[writer]]` tables.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritersFile {
    #[serde(default)]
    pub writer: Vec<Writer>,
}

/// Bounds on what one client can hold.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_per_ip: usize,
    /// Time to send a request's head (including the wait for it on a kept-alive connection).
    pub head_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            max_per_ip: 64,
            head_timeout: Duration::from_secs(20),
        }
    }
}

/// Who sent a request, as its token says.
enum Principal<'a> {
    /// No tokens configured: everyone may do everything (a local test hub).
    Open,
    Admin,
    Writer(&'a Writer),
}

impl Principal<'_> {
    fn may_write(&self, repo: &RepoId) -> bool {
        match self {
            Principal::Open | Principal::Admin => true,
            Principal::Writer(w) => w.may_write(repo),
        }
    }

    /// Uploading content-addressed objects: any writer (they become visible
    /// only through a commit to a repo it may write).
    fn may_upload(&self) -> bool {
        match self {
            Principal::Open | Principal::Admin => true,
            Principal::Writer(w) => !w.write.is_empty(),
        }
    }
}

fn forbidden(repo: &RepoId) -> Response {
    Response::error(403, &format!("this token may not write {repo}"))
        .header("X-Error-Code", "Forbidden")
}

struct State {
    store: Store,
    opts: Options,
    requests: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
    connections: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Largest JSON or NDJSON body (a commit with small files inline).
const MAX_JSON_BODY: u64 = 64 * 1024 * 1024;
const PAGE: usize = 1000;
/// A body may take this long plus the time to send it at [`MIN_BODY_RATE`].
const BODY_GRACE: Duration = Duration::from_secs(30);
const MIN_BODY_RATE: u64 = 256 * 1024;
/// Writing a response may stall this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection's place in the counts; given back on drop.
struct Slot {
    state: Arc<State>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.connections.fetch_sub(1, Ordering::SeqCst);
        let mut per_ip = self.state.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

impl State {
    /// Counts a new connection from `ip`, or `None` when the server or that address is full.
    fn take_slot(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        let all = self.connections.load(Ordering::SeqCst);
        if mine >= self.opts.limits.max_per_ip || all >= self.opts.limits.max_connections {
            return None;
        }
        per_ip.insert(ip, mine + 1);
        self.connections.fetch_add(1, Ordering::SeqCst);
        Some(Slot {
            state: self.clone(),
            ip,
        })
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    listener: TcpListener,
    state: Arc<State>,
}

impl Server {
    pub fn bind(root: &std::path::Path, addr: &str, opts: Options) -> io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let state = Arc::new(State {
            store: Store::open(root)?,
            opts,
            requests: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            connections: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        });
        Ok(Self {
            addr: listener.local_addr()?,
            listener,
            state,
        })
    }

    /// Serves forever (one thread per connection).
    pub fn run(self) -> io::Result<()> {
        for stream in self.listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok(peer) = stream.peer_addr() else {
                continue;
            };
            let Some(slot) = self.state.take_slot(peer.ip()) else {
                // full: say so (the client retries later) rather than drop it
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let busy = Response::error(503, "too many connections; retry later")
                    .header("Retry-After", "1");
                let _ = write_response(&mut stream, busy, false, true, None);
                continue;
            };
            std::thread::spawn(move || {
                let _ = handle_connection(&slot.state, stream);
                drop(slot);
            });
        }
        Ok(())
    }

    /// Runs in a background thread (tests, the swarm).
    pub fn spawn(self) -> SocketAddr {
        let addr = self.addr;
        std::thread::spawn(move || self.run());
        addr
    }
}

fn handle_connection(state: &State, stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let mut conn = Conn::new(stream)?;
    loop {
        conn.set_deadline(state.opts.limits.head_timeout);
        let req = match conn.read_request() {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(super::http::ParseError::Io(_)) => return Ok(()), // timed out or gone
            Err(e) => {
                let _ = write_response(
                    &mut conn.writer,
                    Response::error(400, &e.to_string()),
                    false,
                    true,
                    None,
                );
                return Ok(());
            }
        };
        let body_len = req.content_length.unwrap_or(MAX_JSON_BODY);
        conn.set_deadline(BODY_GRACE + Duration::from_secs(body_len / MIN_BODY_RATE));
        let segs = segments(&req);
        let internal = is_stats(&segs);
        let n = if internal {
            0
        } else {
            state.requests.fetch_add(1, Ordering::SeqCst) + 1
        };
        let f = &state.opts.faults;
        if f.slow_ms > 0 && !internal {
            std::thread::sleep(Duration::from_millis(f.slow_ms));
        }
        let fail =
            !internal && (n <= f.fail_first || f.fail_every.is_some_and(|k| k > 0 && n % k == 0));
        let cut = !internal && f.drop_every.is_some_and(|k| k > 0 && n % k == 0);
        if fail {
            let _ = io::copy(&mut conn, &mut io::sink());
            write_response(
                &mut conn.writer,
                Response::error(503, "injected failure (dtrain hub --fail-every)"),
                false,
                true,
                None,
            )?;
            return Ok(());
        }
        if cut && req.content_length.unwrap_or(0) > 0 {
            // read half the upload, then vanish
            let half = req.content_length.unwrap() / 2;
            let _ = io::copy(&mut (&mut conn).take(half), &mut io::sink());
            return Ok(());
        }
        let head = req.method == "HEAD";
        let resp = match authorize(state, &req, internal) {
            Ok(who) => route(state, &req, &segs, &who, &mut conn),
            Err(denied) => denied,
        };
        tracing::info!(target: "dtrain::hub::access", "{} {} {}", req.method, req.raw_path, resp.status);
        let close = req.wants_close() || !conn.body_done() || cut;
        let cut_after = cut.then(|| resp.body.len() / 2);
        let sent = write_response(&mut conn.writer, resp, head, close, cut_after)?;
        state.bytes_sent.fetch_add(sent, Ordering::Relaxed);
        if close {
            return Ok(());
        }
    }
}

/// The counters route, decided on the parsed segments (a path that only
/// starts like it, e.g. `stats%2F..`, is not it).
fn is_stats(segs: &[String]) -> bool {
    matches!(segs, [a, b] if a == "_dtrain" && b == "stats")
}

/// Tokens compared in constant time (blake3's `Hash` equality is).
fn same_token(given: &str, known: &str) -> bool {
    blake3::hash(given.as_bytes()) == blake3::hash(known.as_bytes())
}

/// Who the request's bearer token names; 401 when tokens are configured and
/// it names nobody. The counters answer anyone.
fn authorize<'a>(
    state: &'a State,
    req: &Request,
    internal: bool,
) -> Result<Principal<'a>, Response> {
    let o = &state.opts;
    if (o.token.is_none() && o.writers.is_empty()) || internal {
        return Ok(Principal::Open);
    }
    let given = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // every known token is compared, so timing does not say which matched
    let admin = o.token.as_deref().is_some_and(|t| same_token(given, t));
    let writer = o.writers.iter().fold(None, |found, w| {
        found.or(same_token(given, &w.token).then_some(w))
    });
    match (admin, writer) {
        (true, _) => Ok(Principal::Admin),
        (false, Some(w)) => Ok(Principal::Writer(w)),
        _ => Err(
            Response::error(401, "Invalid credentials in Authorization header")
                .header("X-Error-Code", "Unauthorized"),
        ),
    }
}

fn store_error(e: StoreError) -> Response {
    let (status, code) = match &e {
        StoreError::NoRepo(_) => (404, "RepoNotFound"),
        StoreError::NoRevision(_) => (404, "RevisionNotFound"),
        StoreError::NoFile(_) => (404, "EntryNotFound"),
        StoreError::RepoExists(_) | StoreError::TagExists(_) | StoreError::Conflict { .. } => {
            (409, "Conflict")
        }
        StoreError::MissingObject(_) | StoreError::Invalid(_) => (422, "Invalid"),
        StoreError::BadRepoId(_) => (400, "InvalidRepoId"),
        StoreError::Outside(_) => (404, "RepoNotFound"),
        StoreError::Io(_) => (500, "Internal"),
    };
    Response::error(status, &e.to_string()).header("X-Error-Code", code)
}

/// A repo id from a route, or the 400 that refuses it.
fn repo_id(kind: RepoType, name: &str) -> Result<RepoId, Response> {
    RepoId::new(kind, name).map_err(store_error)
}

/// Splits the raw path into percent-decoded segments.
fn segments(req: &Request) -> Vec<String> {
    let p = req.raw_path.split('?').next().unwrap_or("/");
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(super::http::decode)
        .collect()
}

/// Takes a repo id off the front of `segs`: "org/name", or a bare "name" when
/// the next segment is one of `markers`.
fn take_repo(segs: &[String], markers: &[&str]) -> Option<(String, usize)> {
    match segs {
        [a, b, ..] if markers.contains(&b.as_str()) => Some((a.clone(), 1)),
        [a, b, ..] => Some((format!("{a}/{b}"), 2)),
        [a] => Some((a.clone(), 1)),
        _ => None,
    }
}

fn base_url(req: &Request) -> String {
    format!("http://{}", req.header("host").unwrap_or("127.0.0.1"))
}

fn read_json(conn: &mut Conn) -> Result<Value, Response> {
    let body = conn
        .read_body(MAX_JSON_BODY)
        .map_err(|e| Response::error(400, &e.to_string()))?;
    serde_json::from_slice(&body)
        .map_err(|e| Response::error(400, &format!("invalid JSON body: {e}")))
}

fn route(
    state: &State,
    req: &Request,
    segs: &[String],
    who: &Principal,
    conn: &mut Conn,
) -> Response {
    let m = req.method.as_str();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        ["_dtrain", "stats"] => Response::json(
            200,
            &json!({
                "requests": state.requests.load(Ordering::SeqCst),
                "bytes_sent": state.bytes_sent.load(Ordering::SeqCst),
                "bytes_received": state.bytes_received.load(Ordering::SeqCst),
            }),
        ),
        ["_dtrain", "stats", "reset"] if matches!(who, Principal::Open | Principal::Admin) => {
            state.requests.store(0, Ordering::SeqCst);
            state.bytes_sent.store(0, Ordering::SeqCst);
            state.bytes_received.store(0, Ordering::SeqCst);
            Response::json(200, &json!({}))
        }
        ["_dtrain", "lfs", _] if !who.may_upload() => {
            Response::error(403, "this token may not upload").header("X-Error-Code", "Forbidden")
        }
        ["_dtrain", "lfs", oid] if m == "PUT" => lfs_put(state, req, conn, oid),
        ["_dtrain", "lfs", oid, "verify"] if m == "POST" => {
            let body = read_json(conn).unwrap_or(Value::Null);
            let size = body.get("size").and_then(Value::as_u64).unwrap_or(0);
            if state.store.has_object(oid, size) {
                Response::json(200, &json!({}))
            } else {
                Response::error(404, &format!("object {oid} of size {size} is not uploaded"))
            }
        }
        ["api", "repos", "create"] if m == "POST" => create_repo(state, who, conn),
        // model-card metadata check the official client runs before uploading a README:
        // the stand-in does not interpret cards, so it accepts them
        ["api", "validate-yaml"] if m == "POST" => {
            let _ = conn.read_body(MAX_JSON_BODY);
            Response::json(200, &json!({"errors": [], "warnings": []}))
        }
        ["api", kind, rest @ ..] if RepoType::from_api(kind).is_some() => {
            let kind = RepoType::from_api(kind).unwrap();
            let rest: Vec<String> = rest.iter().map(|x| x.to_string()).collect();
            api(state, req, who, conn, kind, &rest)
        }
        _ => {
            // downloads: [datasets/]{repo}/resolve/{rev}/{path}; LFS: [datasets/]{repo}.git/info/lfs/objects/batch
            let (kind, rest) = match segs.first().map(String::as_str) {
                Some("datasets") => (RepoType::Dataset, &segs[1..]),
                _ => (RepoType::Model, segs),
            };
            if let Some(i) = rest
                .iter()
                .position(|x| x == "resolve")
                .filter(|&i| i == 1 || i == 2)
            {
                if rest.len() < i + 3 {
                    return Response::error(404, "missing revision or path");
                }
                let repo = match repo_id(kind, &rest[..i].join("/")) {
                    Ok(r) => r,
                    Err(refused) => return refused,
                };
                return resolve(state, req, &repo, &rest[i + 1], &rest[i + 2..].join("/"));
            }
            if let Some(i) = rest
                .iter()
                .position(|x| x.ends_with(".git"))
                .filter(|&i| i == 0 || i == 1)
            {
                if rest[i + 1..].join("/") == "info/lfs/objects/batch" && m == "POST" {
                    let mut name = rest[..=i].join("/");
                    name.truncate(name.len() - 4);
                    return match repo_id(kind, &name) {
                        Ok(repo) => lfs_batch(state, req, who, conn, &repo),
                        Err(refused) => refused,
                    };
                }
            }
            Response::error(404, &format!("no route for {} {}", req.method, req.path))
        }
    }
}

fn resolve(state: &State, req: &Request, repo: &RepoId, rev: &str, path: &str) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::error(405, "resolve takes GET or HEAD");
    }
    let r = match state.store.resolve(repo, rev) {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let Some((entry, location)) = r.files.get(path) else {
        return store_error(StoreError::NoFile(format!("{repo}/{path} at {rev}")));
    };
    let etag = if entry.lfs {
        entry.sha256.clone()
    } else {
        entry.git.clone()
    };
    let file = match std::fs::File::open(location) {
        Ok(f) => f,
        Err(e) => return Response::error(500, &e.to_string()),
    };
    let size = entry.size;
    let mut resp = match parse_range(req.header("range"), size) {
        Ok(None) => Response::new(
            200,
            Body::File {
                file,
                start: 0,
                len: size,
            },
        ),
        Ok(Some((a, b))) => Response::new(
            206,
            Body::File {
                file,
                start: a,
                len: b - a + 1,
            },
        )
        .header("Content-Range", format!("bytes {a}-{b}/{size}")),
        Err(()) => {
            return Response::error(416, "range not satisfiable")
                .header("Content-Range", format!("bytes */{size}"))
        }
    };
    resp = resp
        .header("ETag", format!("\"{etag}\""))
        .header("X-Repo-Commit", r.commit.clone())
        .header("Accept-Ranges", "bytes")
        .header("Content-Type", "application/octet-stream");
    if entry.lfs {
        resp = resp
            .header("X-Linked-Etag", format!("\"{}\"", entry.sha256))
            .header("X-Linked-Size", size.to_string());
    }
    resp
}

fn tree_entry(path: &str, e: &FileEntry) -> Value {
    let mut v = json!({"type": "file", "oid": e.git, "size": e.size, "path": path});
    if e.lfs {
        v["lfs"] = json!({"oid": e.sha256, "size": e.size, "pointerSize": 134});
    }
    v
}

fn api(
    state: &State,
    req: &Request,
    who: &Principal,
    conn: &mut Conn,
    kind: RepoType,
    rest: &[String],
) -> Response {
    const ACTIONS: [&str; 6] = ["tree", "refs", "revision", "preupload", "commit", "tag"];
    let Some((name, used)) = take_repo(rest, &ACTIONS) else {
        return Response::error(404, "missing repository id");
    };
    let repo = match repo_id(kind, &name) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    let rest = &rest[used..];
    let action = rest.first().map(String::as_str);
    if req.method == "POST" && !who.may_write(&repo) {
        return forbidden(&repo);
    }
    match (req.method.as_str(), action) {
        ("GET", None) | ("GET", Some("revision")) => {
            let rev = rest.get(1).map(String::as_str).unwrap_or("main");
            match state.store.resolve(&repo, rev) {
                Ok(r) => Response::json(
                    200,
                    &json!({
                        "id": repo.name(), "_id": repo.name(), "sha": r.commit, "private": false, "disabled": false,
                        "gated": false, "downloads": 0, "likes": 0, "tags": [],
                        "siblings": r.files.iter().map(|(p, (e, _))| json!({"rfilename": p, "size": e.size})).collect::<Vec<_>>(),
                    }),
                ),
                Err(e) => store_error(e),
            }
        }
        ("GET", Some("refs")) => match state.store.refs(&repo) {
            Ok(refs) => {
                let list = |m: &std::collections::BTreeMap<String, String>, prefix: &str| {
                    m.iter()
                        .map(|(n, c)| json!({"name": n, "ref": format!("refs/{prefix}/{n}"), "targetCommit": c}))
                        .collect::<Vec<_>>()
                };
                Response::json(
                    200,
                    &json!({"branches": list(&refs.branches, "heads"), "tags": list(&refs.tags, "tags"), "converts": []}),
                )
            }
            Err(e) => store_error(e),
        },
        ("GET", Some("tree")) => {
            let Some(rev) = rest.get(1) else {
                return Response::error(404, "missing revision");
            };
            let dir = rest[2..].join("/");
            tree(state, req, &repo, rev, &dir)
        }
        ("POST", Some("preupload")) => {
            let body = match read_json(conn) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if !state.store.exists(&repo) {
                return store_error(StoreError::NoRepo(repo.to_string()));
            }
            let files: Vec<Value> = body
                .get("files")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|f| {
                    let path = f.get("path").and_then(Value::as_str).unwrap_or("");
                    let size = f.get("size").and_then(Value::as_u64).unwrap_or(0);
                    let lfs = size >= 10 * 1024 * 1024
                        || [".safetensors", ".parquet", ".bin", ".pt"].iter().any(|e| path.ends_with(e));
                    json!({"path": path, "uploadMode": if lfs {"lfs"} else {"regular"}, "shouldIgnore": false})
                })
                .collect();
            let head = state
                .store
                .refs(&repo)
                .ok()
                .and_then(|r| r.branches.get("main").cloned());
            Response::json(200, &json!({"files": files, "commitOid": head}))
        }
        ("POST", Some("commit")) => {
            let Some(branch) = rest.get(1) else {
                return Response::error(404, "missing revision");
            };
            commit(state, req, conn, &repo, branch)
        }
        ("POST", Some("tag")) => {
            let Some(rev) = rest.get(1) else {
                return Response::error(404, "missing revision");
            };
            let body = match read_json(conn) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let Some(tag) = body.get("tag").and_then(Value::as_str) else {
                return Response::error(400, "missing \"tag\"");
            };
            match state.store.create_tag(&repo, tag, rev) {
                Ok(_) => Response::json(200, &json!({})),
                Err(e) => store_error(e),
            }
        }
        _ => Response::error(404, &format!("no route for {} {}", req.method, req.path)),
    }
}

fn tree(state: &State, req: &Request, repo: &RepoId, rev: &str, dir: &str) -> Response {
    let r = match state.store.resolve(repo, rev) {
        Ok(r) => r,
        Err(e) => return store_error(e),
    };
    let recursive = matches!(req.query("recursive"), Some("true" | "1" | "True"));
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{}/", dir.trim_end_matches('/'))
    };
    if !prefix.is_empty() && !r.files.keys().any(|k| k.starts_with(&prefix)) {
        return store_error(StoreError::NoFile(format!("{repo}/{dir} at {rev}")));
    }
    let mut entries: Vec<Value> = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for (path, (e, _)) in &r.files {
        let Some(sub) = path.strip_prefix(&prefix) else {
            continue;
        };
        let parts: Vec<&str> = sub.split('/').collect();
        for depth in 1..parts.len() {
            if recursive || depth == 1 {
                dirs.insert(format!("{prefix}{}", parts[..depth].join("/")));
            }
        }
        if recursive || parts.len() == 1 {
            entries.push(tree_entry(path, e));
        }
    }
    for d in dirs {
        let oid = blake3::hash(format!("{}:{d}", r.commit).as_bytes()).to_hex()[..40].to_string();
        entries.push(json!({"type": "directory", "oid": oid, "path": d}));
    }
    entries.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let start: usize = req
        .query("cursor")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = entries.iter().skip(start).take(PAGE).cloned().collect();
    let mut resp = Response::json(200, &Value::Array(page));
    if start + PAGE < entries.len() {
        let base = req.raw_path.split('?').next().unwrap_or("");
        let rec = if recursive { "recursive=true&" } else { "" };
        resp = resp.header(
            "Link",
            format!(
                "<{}{base}?{rec}cursor={}>; rel=\"next\"",
                base_url(req),
                start + PAGE
            ),
        );
    }
    resp
}

fn create_repo(state: &State, who: &Principal, conn: &mut Conn) -> Response {
    let body = match read_json(conn) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return Response::error(400, "missing \"name\"");
    };
    let name = match body.get("organization").and_then(Value::as_str) {
        Some(org) if !name.contains('/') => format!("{org}/{name}"),
        _ => name.to_string(),
    };
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .and_then(RepoType::from_api)
        .unwrap_or(RepoType::Model);
    let repo = match repo_id(kind, &name) {
        Ok(r) => r,
        Err(refused) => return refused,
    };
    if !who.may_write(&repo) {
        return forbidden(&repo);
    }
    match state.store.create_repo(&repo, false) {
        Ok(()) => Response::json(
            200,
            &json!({"url": format!("/{repo}"), "name": repo.name()}),
        ),
        Err(e) => store_error(e),
    }
}

fn lfs_batch(
    state: &State,
    req: &Request,
    who: &Principal,
    conn: &mut Conn,
    repo: &RepoId,
) -> Response {
    let body = match read_json(conn) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let uploading = body.get("operation").and_then(Value::as_str) != Some("download");
    if uploading && !who.may_write(repo) {
        return forbidden(repo);
    }
    if !state.store.exists(repo) {
        return store_error(StoreError::NoRepo(repo.to_string()));
    }
    let op = body
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("upload");
    let base = base_url(req);
    let objects: Vec<Value> = body
        .get("objects")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|o| {
            let oid = o.get("oid").and_then(Value::as_str).unwrap_or("");
            let size = o.get("size").and_then(Value::as_u64).unwrap_or(0);
            let have = state.store.has_object(oid, size);
            match (op, have) {
                ("upload", true) => json!({"oid": oid, "size": size}),
                ("upload", false) => json!({"oid": oid, "size": size, "authenticated": true, "actions": {
                    "upload": {"href": format!("{base}/_dtrain/lfs/{oid}?size={size}"), "header": {}},
                    "verify": {"href": format!("{base}/_dtrain/lfs/{oid}/verify"), "header": {}},
                }}),
                (_, true) => json!({"oid": oid, "size": size, "authenticated": true, "actions": {
                    "download": {"href": format!("{base}/_dtrain/lfs/{oid}"), "header": {}}}}),
                (_, false) => json!({"oid": oid, "size": size, "error": {"code": 404, "message": "object not found"}}),
            }
        })
        .collect();
    Response::json(
        200,
        &json!({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}),
    )
    .header("Content-Type", "application/vnd.git-lfs+json")
}

fn lfs_put(state: &State, req: &Request, conn: &mut Conn, oid: &str) -> Response {
    let size = req
        .query("size")
        .and_then(|s| s.parse().ok())
        .or(req.content_length);
    let Some(size) = size else {
        return Response::error(411, "upload needs a size");
    };
    let mut counted = CountingReader { inner: conn, n: 0 };
    let r = state.store.put_object(oid, size, &mut counted);
    state.bytes_received.fetch_add(counted.n, Ordering::Relaxed);
    match r {
        Ok(()) => Response::json(200, &json!({})),
        Err(e) => store_error(e),
    }
}

struct CountingReader<'a> {
    inner: &'a mut Conn,
    n: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

fn commit(state: &State, req: &Request, conn: &mut Conn, repo: &RepoId, branch: &str) -> Response {
    let body = match conn.read_body(MAX_JSON_BODY) {
        Ok(b) => b,
        Err(e) => return Response::error(400, &e.to_string()),
    };
    state
        .bytes_received
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    let mut ops = Vec::new();
    let mut summary = String::new();
    let mut parent = None;
    let mut lines = Vec::new();
    for (i, l) in body
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.iter().all(u8::is_ascii_whitespace))
    {
        match serde_json::from_slice::<Value>(l) {
            Ok(x) => lines.push(x),
            Err(e) => return Response::error(400, &format!("commit line {}: {e}", i + 1)),
        }
    }
    for l in lines {
        let key = l.get("key").and_then(Value::as_str).unwrap_or("");
        let v = l.get("value").cloned().unwrap_or(Value::Null);
        let path = v
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        match key {
            "header" => {
                summary = v
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                parent = v
                    .get("parentCommit")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            "file" => {
                let content = v.get("content").and_then(Value::as_str).unwrap_or("");
                match base64::engine::general_purpose::STANDARD.decode(content) {
                    Ok(bytes) => ops.push(Op::Put { path, bytes }),
                    Err(e) => return Response::error(400, &format!("{path}: bad base64: {e}")),
                }
            }
            "lfsFile" => {
                let oid = v
                    .get("oid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                // the size is the client's word, checked against the stored object
                let Some(size) = v.get("size").and_then(Value::as_u64) else {
                    return Response::error(400, &format!("{path}: lfsFile needs a size"));
                };
                ops.push(Op::PutObject {
                    path,
                    sha256: oid,
                    size,
                });
            }
            "deletedFile" => ops.push(Op::Delete { path }),
            "deletedFolder" => ops.push(Op::DeleteFolder { path }),
            other => return Response::error(400, &format!("unknown commit operation '{other}'")),
        }
    }
    match state
        .store
        .commit(repo, branch, ops, parent.as_deref(), &summary)
    {
        Ok(id) => Response::json(
            200,
            &json!({"success": true, "commitOid": id, "commitUrl": format!("{}/{repo}/commit/{id}", base_url(req)), "pullRequestUrl": null}),
        ),
        Err(e) => store_error(e),
    }
}
