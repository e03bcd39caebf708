//! Hostile clients of `dtrain hub serve`, and hostile hubs for `dtrain pull`.
//!
//! Each test is an attack that worked before its defence: a real hub process,
//! raw requests over real sockets, a secret file beside the hub's root that no
//! request may read, move or delete.
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

const SECRET: &[u8] = b"TOP SECRET";

/// A hub root with one repo (org/m), and `secret.txt` beside the root.
struct Site {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("org/m")).unwrap();
        fs::write(root.join("org/m/a.txt"), b"hello").unwrap();
        fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
        Site { dir, root }
    }

    fn secret(&self) -> PathBuf {
        self.dir.path().join("secret.txt")
    }
}

fn addr(url: &str) -> &str {
    url.strip_prefix("http://").unwrap()
}

/// Sends `request` as it is and reads the answer until the server closes.
fn raw(url: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(url)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn get(url: &str, path: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    raw(
        url,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
}

fn post(url: &str, path: &str, body: &str) -> String {
    raw(
        url,
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// What a commit of one small file looks like on the wire (NDJSON).
fn commit_body(path: &str) -> String {
    format!(
        "{{\"key\":\"header\",\"value\":{{\"summary\":\"x\"}}}}\n{{\"key\":\"file\",\"value\":{{\"path\":\"{path}\",\"content\":\"cGxhbnRlZA==\",\"encoding\":\"base64\"}}}}\n"
    )
}

#[test]
fn repo_ids_from_urls_never_reach_outside_the_root() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &[]);
    let abs = site.dir.path().to_str().unwrap().replace('/', "%2F");
    let reads = [
        "/%2e%2e/resolve/main/secret.txt".to_string(),
        "/..%2F/resolve/main/secret.txt".into(),
        "/org%2F..%2F../resolve/main/secret.txt".into(),
        format!("/{abs}/resolve/main/secret.txt"),
        "/datasets/%2e%2e%2F%2e%2e/resolve/main/secret.txt".into(),
        "/api/models/%2e%2e/tree/main".into(),
        "/api/models/%2e%2e/revision/main".into(),
        format!("/api/models/{abs}/tree/main"),
        "/api/datasets/..%2F../refs".into(),
    ];
    for path in &reads {
        let r = get(&hub.url, path, None);
        assert!((400..500).contains(&status(&r)), "{path}: {r}");
        assert!(
            !r.contains("TOP SECRET") && !r.contains("secret.txt\""),
            "{path} read outside the root: {r}"
        );
    }
    // writes: a commit to `..` would import the parent folder and replace it
    for path in [
        "/api/models/%2e%2e/commit/main",
        "/api/models/org%2F..%2F../commit/main",
        &format!("/api/models/{abs}/commit/main"),
    ] {
        let r = post(&hub.url, path, &commit_body("planted.txt"));
        assert!((400..500).contains(&status(&r)), "{path}: {r}");
    }
    let r = post(
        &hub.url,
        "/api/repos/create",
        r#"{"name": "..", "organization": "..", "type": "model"}"#,
    );
    assert_eq!(status(&r), 400, "{r}");
    assert_eq!(fs::read(site.secret()).unwrap(), SECRET, "secret untouched");
    assert!(!site.dir.path().join("planted.txt").exists());
    assert!(site.root.join("org/m/a.txt").exists(), "the root is intact");
}

#[test]
fn an_lfs_oid_cannot_name_a_file() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &[]);
    let lfs = |oid: &str, size: &str| {
        format!(
            "{{\"key\":\"header\",\"value\":{{\"summary\":\"x\"}}}}\n{{\"key\":\"lfsFile\",\"value\":{{\"path\":\"x.bin\",\"algo\":\"sha256\",\"oid\":\"{oid}\"{size}}}}}\n"
        )
    };
    // ../../../secret.txt from .dtrain-hub/objects is the secret
    for body in [
        lfs("../../../secret.txt", ",\"size\":10"),
        lfs("../../../secret.txt", ""),
        lfs(&"A".repeat(64), ",\"size\":10"),
    ] {
        let r = post(&hub.url, "/api/models/org/m/commit/main", &body);
        assert!((400..500).contains(&status(&r)), "{body}: {r}");
    }
    let r = get(&hub.url, "/org/m/resolve/main/x.bin", None);
    assert_eq!(status(&r), 404, "{r}");
    assert!(!r.contains("TOP SECRET"));
    let r = raw(
        &hub.url,
        b"PUT /_dtrain/lfs/..%2F..%2F..%2Fplanted?size=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    );
    assert!((400..500).contains(&status(&r)), "{r}");
    assert!(!site.dir.path().join("planted").exists());
}

#[test]
fn header_values_cannot_carry_new_headers() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &[]);
    let r = get(
        &hub.url,
        "/api/models/org/x%0d%0aSet-Cookie:%20pwned=1/tree/main",
        None,
    );
    assert!((400..500).contains(&status(&r)), "{r}");
    let head = r.split("\r\n\r\n").next().unwrap();
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("set-cookie")),
        "{head}"
    );
}

/// Sends `prefix` then `total` bytes of `fill` with no line end, in 1 MiB
/// writes, until the server stops reading; returns how much was sent.
fn flood(url: &str, prefix: &[u8], fill: u8, total: usize) -> usize {
    let mut s = TcpStream::connect(addr(url)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(prefix).unwrap();
    let block = vec![fill; 1 << 20];
    let mut sent = 0;
    while sent < total {
        match s.write(&block) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn an_endless_head_or_chunk_line_is_not_buffered() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &[]);
    let _ = get(&hub.url, "/api/models/org/m/refs", None);
    let before = peak_rss_kib(hub.pid());
    let total = 96 << 20;
    flood(&hub.url, b"GET /", b'a', total);
    flood(
        &hub.url,
        b"GET /api/models/org/m HTTP/1.1\r\nHost: x\r\nX-Long: ",
        b'b',
        total,
    );
    flood(
        &hub.url,
        b"POST /api/models/org/m/preupload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        b'1',
        total,
    );
    std::thread::sleep(Duration::from_millis(300));
    let grown_mib = (peak_rss_kib(hub.pid()) - before) / 1024;
    assert!(
        grown_mib < 16,
        "the hub grew by {grown_mib} MiB reading lines that never end"
    );
    // and it still serves
    assert_eq!(status(&get(&hub.url, "/api/models/org/m/refs", None)), 200);
}

#[test]
fn a_slow_client_is_cut_at_the_request_deadline() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &["--head-timeout", "2"]);
    let mut s = TcpStream::connect(addr(&hub.url)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    let t0 = Instant::now();
    // one byte every 400 ms: every read succeeds, the request never completes
    let mut closed = false;
    for b in b"GET /api/models/org/m/refs HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(_) => {
                closed = true; // an answer (or EOF) means the server gave up on us
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let held = t0.elapsed();
    assert!(closed, "the connection was held for {held:?}");
    assert!(held < Duration::from_secs(6), "held for {held:?}");
}

#[test]
fn one_address_cannot_take_every_slot_and_a_full_server_says_503() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &["--max-per-ip", "3"]);
    let idle: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr(&hub.url)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = get(&hub.url, "/api/models/org/m/refs", None);
    assert_eq!(status(&r), 503, "{r}");
    assert!(r.contains("Retry-After"), "{r}");
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status(&get(&hub.url, "/api/models/org/m/refs", None)), 200);
}

fn tokens_file(dir: &Path) -> PathBuf {
    let p = dir.join("tokens.toml");
    fs::write(
        &p,
        "[[writer]]\nname = \"miner-0\"\ntoken = \"tok-miner-0-aaaaaaaa\"\nwrite = [\"org/miner-0\"]\n\n\
         [[writer]]\nname = \"miner-1\"\ntoken = \"tok-miner-1-bbbbbbbb\"\nwrite = [\"org/miner-1\"]\n",
    )
    .unwrap();
    p
}

#[test]
fn the_counters_route_is_decided_on_parsed_segments() {
    let _machine = beside_others();
    let site = Site::new();
    let hub = Hub::start(&site.root, &["--token", "admin-token-cccccccc"]);
    assert_eq!(status(&get(&hub.url, "/_dtrain/stats", None)), 200);
    for path in [
        "/_dtrain/stats%2F..%2F..%2Forg/m/resolve/main/a.txt",
        "/_dtrain/stats/..%2F..%2Forg/m/resolve/main/a.txt",
        "/_dtrain/stats/reset",
    ] {
        let r = get(&hub.url, path, None);
        assert_eq!(status(&r), 401, "{path}: {r}");
        assert!(!r.contains("hello"));
    }
    let r = get(
        &hub.url,
        "/org/m/resolve/main/a.txt",
        Some("admin-token-cccccccc"),
    );
    assert!(r.ends_with("hello"), "{r}");
}

#[test]
fn a_writer_token_writes_only_its_own_repos() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tokens = tokens_file(dir.path());
    let hub = Hub::start(
        &root,
        &[
            "--token",
            "admin-token-cccccccc",
            "--tokens",
            tokens.to_str().unwrap(),
        ],
    );
    let ckpt = dir.path().join("ckpt");
    fs::create_dir_all(&ckpt).unwrap();
    fs::write(ckpt.join("config.json"), b"{}").unwrap();
    fs::write(ckpt.join("model.safetensors"), vec![7u8; 4096]).unwrap();
    let home = dir.path().join("home");
    let push = |token: &str, repo: &str, tag: &str| {
        dtrain_env(
            &[
                "push",
                ckpt.to_str().unwrap(),
                "--repo",
                repo,
                "--tag",
                tag,
                "--create",
            ],
            &[
                ("HF_ENDPOINT", &hub.url),
                ("HF_TOKEN", token),
                ("HF_HOME", home.to_str().unwrap()),
            ],
        )
    };
    let ok = push("tok-miner-0-aaaaaaaa", "org/miner-0", "0");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let ok = push("tok-miner-1-bbbbbbbb", "org/miner-1", "0");
    assert!(ok.status.success(), "{}", stderr(&ok));
    // miner-0 can neither overwrite nor tag miner-1's repo, nor make the model repo
    let o = push("tok-miner-0-aaaaaaaa", "org/miner-1", "1");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("403") || stderr(&o).contains("may not write"),
        "{}",
        stderr(&o)
    );
    let o = push("tok-miner-0-aaaaaaaa", "org/model", "0");
    assert!(!o.status.success());
    let tag = raw(
        &hub.url,
        b"POST /api/models/org/miner-1/tag/main HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok-miner-0-aaaaaaaa\r\nContent-Length: 12\r\nConnection: close\r\n\r\n{\"tag\":\"9\"}\n",
    );
    assert_eq!(status(&tag), 403, "{tag}");
    // everyone reads everything; a wrong token reads nothing
    let refs = "/api/models/org/miner-1/refs";
    assert_eq!(
        status(&get(&hub.url, refs, Some("tok-miner-0-aaaaaaaa"))),
        200
    );
    assert_eq!(
        status(&get(&hub.url, refs, Some("tok-miner-0-aaaaaaab"))),
        401
    );
    // the admin writes anywhere
    assert!(push("admin-token-cccccccc", "org/model", "0")
        .status
        .success());
}

#[test]
fn concurrent_local_pushes_keep_every_tag() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    fs::create_dir_all(&ckpt).unwrap();
    fs::write(ckpt.join("config.json"), b"{}").unwrap();
    fs::write(ckpt.join("model.safetensors"), vec![1u8; 1024]).unwrap();
    let repo = format!("file://{}/root/org/m", dir.path().display());
    let n = 24;
    let children: Vec<_> = (0..n)
        .map(|i| {
            std::process::Command::new(bin())
                .args(["push", ckpt.to_str().unwrap(), "--repo", &repo, "--tag"])
                .arg(i.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let store = dtrain::hub::store::Store::open(dir.path().join("root")).unwrap();
    let id = dtrain::hub::RepoId::new(dtrain::hub::RepoType::Model, "org/m").unwrap();
    assert_eq!(store.refs(&id).unwrap().tags.len(), n, "tags were lost");
}

/// A hub that answers each request with what `answer(path)` says, and counts
/// the connections it got.
struct FakeHub {
    url: String,
    connections: Arc<AtomicUsize>,
}

impl FakeHub {
    fn start(ip: &str, answer: impl Fn(&str) -> (u16, String, String) + Send + 'static) -> FakeHub {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_err() {
                    continue;
                }
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let (code, headers, body) = answer(&path);
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                    body.len()
                );
            }
        });
        FakeHub { url, connections }
    }
}

fn pull_from(hub: &str, dest: &Path) -> std::process::Output {
    dtrain_env(
        &[
            "pull",
            "--repo",
            "org/m",
            "--tag",
            "1",
            "-o",
            dest.to_str().unwrap(),
        ],
        &[
            ("HF_ENDPOINT", hub),
            ("HF_TOKEN", "secret-token-dddddddd"),
            (
                "HF_HOME",
                dest.parent().unwrap().join("home").to_str().unwrap(),
            ),
        ],
    )
}

/// A hub that lists `tree` (with `link` as the tree page's extra headers).
fn hostile_hub(sha: &'static str, tree: &'static str, link: String) -> FakeHub {
    FakeHub::start("127.0.0.1", move |path| {
        if path.ends_with("/refs") {
            (
                200,
                String::new(),
                r#"{"branches":[],"tags":[{"name":"1"}]}"#.into(),
            )
        } else if path.contains("/revision/") {
            (200, String::new(), format!("{{\"sha\":\"{sha}\"}}"))
        } else if path.contains("/tree/") {
            (200, link.clone(), tree.to_string())
        } else {
            (404, String::new(), "{}".into())
        }
    })
}

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

#[test]
fn pull_refuses_paths_and_commits_that_leave_its_folder() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a/b/out");
    let tree = r#"[{"type":"file","path":"../../evil.txt","oid":"0000000000000000000000000000000000000000","size":3}]"#;
    let hub = hostile_hub(SHA, tree, String::new());
    let o = pull_from(&hub.url, &dest);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("not inside a repository"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("a/evil.txt").exists() && !dest.exists());
    let hub = hostile_hub("../../../../x", "[]", String::new());
    let o = pull_from(&hub.url, &dest);
    assert!(
        stderr(&o).contains("not a 40-hex commit id"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn pagination_never_takes_the_token_to_another_host() {
    let _machine = beside_others();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = FakeHub::start("127.0.0.2", |_| (200, String::new(), "[]".into()));
    let link = format!(
        "Link: <{}/api/models/org/m/tree/{SHA}?cursor=1>; rel=\"next\"\r\n",
        elsewhere.url
    );
    let hub = hostile_hub(SHA, "[]", link);
    let o = pull_from(&hub.url, &dir.path().join("out"));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another host"), "{}", stderr(&o));
    assert_eq!(
        elsewhere.connections.load(Ordering::SeqCst),
        0,
        "the client called the other host"
    );
}
