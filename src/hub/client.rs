//! A blocking client for the Hub's HTTP API (ureq).
//!
//! Every request goes through one retry policy: connection errors, timeouts,
//! 429 and 5xx are retried with exponential backoff and jitter up to a bound;
//! a ranged download that breaks off resumes from the byte it reached. 401/403
//! become one line telling the user to set HF_TOKEN, 404 names what is missing.
//! Bytes received are counted, so commands can report how much they fetched.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;

use super::store::RepoId;
use super::HubEnv;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: access denied ({status}); set HF_TOKEN to a token with access to it")]
    Auth { url: String, status: u16 },
    #[error("not found: {what}")]
    NotFound { what: String },
    #[error("{url}: HTTP {status}: {msg}")]
    Http {
        url: String,
        status: u16,
        msg: String,
    },
    #[error("{url}: {msg} (gave up after {attempts} attempts; the Hub endpoint is {endpoint}, set by HF_ENDPOINT)")]
    Network {
        url: String,
        msg: String,
        attempts: u32,
        endpoint: String,
    },
    #[error("{url}: {msg}")]
    Protocol { url: String, msg: String },
}

impl ClientError {
    /// True for failures that retrying cannot fix.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ClientError::Auth { .. } | ClientError::NotFound { .. }
        )
    }
}

/// One attempt's outcome, before the retry policy decides.
enum Attempt<T> {
    Ok(T),
    Retry(String),
    Fail(ClientError),
}

pub struct HubClient {
    pub env: HubEnv,
    agent: ureq::Agent,
    pub retries: u32,
    /// Base delay of the backoff (doubles each attempt).
    pub backoff: Duration,
    received: AtomicU64,
    requests: AtomicU64,
}

/// An entry of a tree listing.
#[derive(Clone, Debug, Deserialize)]
pub struct TreeEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub oid: String,
    #[serde(default)]
    pub lfs: Option<LfsInfo>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LfsInfo {
    pub oid: String,
    pub size: u64,
}

impl TreeEntry {
    /// The content identity: the LFS sha256 if any, else the git blob id.
    pub fn etag(&self) -> &str {
        self.lfs
            .as_ref()
            .map(|l| l.oid.as_str())
            .unwrap_or(&self.oid)
    }
}

fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = getrandom::getrandom(&mut b);
    if max == 0 {
        0
    } else {
        u64::from_le_bytes(b) % max
    }
}

/// Encodes a repo path for a URL, keeping the slashes.
pub fn encode_path(p: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(p, SET).to_string()
}

fn encode_segment(p: &str) -> String {
    percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl HubClient {
    pub fn new(env: HubEnv, retries: u32) -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout_read(Duration::from_secs(60))
            .timeout_write(Duration::from_secs(60))
            .redirects(5)
            .user_agent(concat!("dtrain/", env!("CARGO_PKG_VERSION")))
            .build();
        Self {
            env,
            agent,
            retries,
            backoff: Duration::from_millis(200),
            received: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub fn from_env(retries: u32) -> Self {
        Self::new(HubEnv::from_env(), retries)
    }

    /// Bytes of response bodies received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// A request with the token attached.
    pub fn request(&self, method: &str, url: &str) -> ureq::Request {
        let r = self.agent.request(method, url);
        match &self.env.token {
            Some(t) => r.set("Authorization", &format!("Bearer {t}")),
            None => r,
        }
    }

    pub fn resolve_url(&self, repo: &RepoId, rev: &str, path: &str) -> String {
        format!(
            "{}/{}resolve/{}/{}",
            self.env.endpoint,
            repo_prefix(repo),
            encode_segment(rev),
            encode_path(path)
        )
    }

    pub fn api_url(&self, repo: &RepoId, tail: &str) -> String {
        format!(
            "{}/api/{}/{}/{}",
            self.env.endpoint,
            repo.kind().api(),
            repo.name(),
            tail
        )
    }

    /// Runs `f` under the retry policy. `what` names the resource for 404s.
    fn retry<T>(
        &self,
        url: &str,
        what: &str,
        mut f: impl FnMut(u32) -> Attempt<T>,
    ) -> Result<T, ClientError> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                let base = self.backoff.as_millis() as u64 * (1u64 << (attempt - 1).min(6));
                let delay = base.min(10_000);
                std::thread::sleep(Duration::from_millis(delay / 2 + jitter_ms(delay / 2 + 1)));
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            match f(attempt) {
                Attempt::Ok(v) => return Ok(v),
                Attempt::Fail(e) => {
                    return Err(match e {
                        ClientError::NotFound { .. } => ClientError::NotFound {
                            what: what.to_string(),
                        },
                        e => e,
                    })
                }
                Attempt::Retry(msg) => {
                    if attempt < self.retries {
                        tracing::info!(
                            "{url}: {msg}; retrying ({} of {})",
                            attempt + 1,
                            self.retries
                        );
                    }
                    last = msg
                }
            }
        }
        Err(ClientError::Network {
            url: url.to_string(),
            msg: last,
            attempts: self.retries + 1,
            endpoint: self.env.endpoint.clone(),
        })
    }

    /// Classifies a ureq result.
    fn classify(url: &str, r: Result<ureq::Response, ureq::Error>) -> Attempt<ureq::Response> {
        match r {
            Ok(resp) => Attempt::Ok(resp),
            Err(ureq::Error::Status(code, resp)) => {
                let msg = resp
                    .header("X-Error-Message")
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        resp.into_string()
                            .unwrap_or_default()
                            .chars()
                            .take(300)
                            .collect()
                    });
                match code {
                    401 | 403 => Attempt::Fail(ClientError::Auth {
                        url: url.into(),
                        status: code,
                    }),
                    404 => Attempt::Fail(ClientError::NotFound { what: url.into() }),
                    429 | 500..=599 => Attempt::Retry(format!("HTTP {code}: {msg}")),
                    _ => Attempt::Fail(ClientError::Http {
                        url: url.into(),
                        status: code,
                        msg,
                    }),
                }
            }
            // ureq's text starts with the URL, which the error names already
            Err(ureq::Error::Transport(t)) => {
                let text = t.to_string();
                let text = text.strip_prefix(&format!("{url}: ")).unwrap_or(&text);
                Attempt::Retry(text.to_string())
            }
        }
    }

    /// GET a JSON document.
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<(T, Option<String>), ClientError> {
        self.retry(url, what, |_| {
            match Self::classify(url, self.request("GET", url).call()) {
                Attempt::Ok(resp) => {
                    let link = resp.header("Link").map(str::to_string);
                    let mut body = Vec::new();
                    if let Err(e) = resp.into_reader().take(1 << 30).read_to_end(&mut body) {
                        return Attempt::Retry(format!("reading body: {e}"));
                    }
                    self.received
                        .fetch_add(body.len() as u64, Ordering::Relaxed);
                    match serde_json::from_slice(&body) {
                        Ok(v) => Attempt::Ok((v, link)),
                        Err(e) => Attempt::Fail(ClientError::Protocol {
                            url: url.into(),
                            msg: format!("invalid JSON: {e}"),
                        }),
                    }
                }
                Attempt::Retry(m) => Attempt::Retry(m),
                Attempt::Fail(e) => Attempt::Fail(e),
            }
        })
    }

    /// Lists files (and folders) under `dir` at `rev`, following pagination.
    pub fn list_tree(
        &self,
        repo: &RepoId,
        rev: &str,
        dir: &str,
        recursive: bool,
    ) -> Result<Vec<TreeEntry>, ClientError> {
        let mut url = self.api_url(
            repo,
            &format!("tree/{}/{}", encode_segment(rev), encode_path(dir)),
        );
        if recursive {
            url.push_str("?recursive=true");
        }
        let mut out = Vec::new();
        let what = format!(
            "{repo} at revision {rev}: {}",
            if dir.is_empty() { "/" } else { dir }
        );
        loop {
            let (page, link): (Vec<TreeEntry>, _) = self.get_json(&url, &what)?;
            out.extend(page);
            match link.as_deref().and_then(next_link) {
                // the token goes only where the listing started
                Some(next) if same_origin(&next, &self.env.endpoint) => url = next,
                Some(next) => {
                    return Err(ClientError::Protocol {
                        url,
                        msg: format!(
                            "the next page is on another host ({}); not following it",
                            next.chars().take(200).collect::<String>()
                        ),
                    })
                }
                None => return Ok(out),
            }
        }
    }

    /// Reads bytes [start, start+len) of a file, resuming after broken bodies.
    pub fn get_range(
        &self,
        url: &str,
        what: &str,
        start: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        self.retry(url, what, |_| {
            let from = start + out.len() as u64;
            let to = start + len - 1;
            let req = self
                .request("GET", url)
                .set("Range", &format!("bytes={from}-{to}"));
            match Self::classify(url, req.call()) {
                Attempt::Ok(resp) => {
                    if resp.status() != 206 {
                        return Attempt::Fail(ClientError::Protocol {
                            url: url.into(),
                            msg: format!("server answered {} to a Range request", resp.status()),
                        });
                    }
                    let want = to + 1 - from;
                    let mut reader = resp.into_reader().take(want);
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => {
                                out.extend_from_slice(&buf[..n]);
                                self.received.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(e) => {
                                return Attempt::Retry(format!(
                                    "connection broke after {} bytes: {e}",
                                    out.len()
                                ))
                            }
                        }
                    }
                    if (out.len() as u64) < len {
                        return Attempt::Retry(format!(
                            "body ended after {} of {len} bytes",
                            out.len()
                        ));
                    }
                    Attempt::Ok(())
                }
                Attempt::Retry(m) => Attempt::Retry(m),
                Attempt::Fail(e) => Attempt::Fail(e),
            }
        })?;
        Ok(out)
    }
}

impl HubClient {
    /// Sends a body (JSON or NDJSON) and parses the JSON answer, retrying
    /// connection errors, 429 and 5xx. `what` names the resource for 404s.
    pub fn send_json(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: &[u8],
        what: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.retry(url, what, |_| {
            match Self::classify(
                url,
                self.request(method, url)
                    .set("Content-Type", content_type)
                    .send_bytes(body),
            ) {
                Attempt::Ok(resp) => {
                    let mut b = Vec::new();
                    if let Err(e) = resp.into_reader().take(64 << 20).read_to_end(&mut b) {
                        return Attempt::Retry(format!("reading the answer: {e}"));
                    }
                    if b.is_empty() {
                        return Attempt::Ok(serde_json::Value::Null);
                    }
                    match serde_json::from_slice(&b) {
                        Ok(v) => Attempt::Ok(v),
                        Err(e) => Attempt::Fail(ClientError::Protocol {
                            url: url.into(),
                            msg: format!("invalid JSON answer: {e}"),
                        }),
                    }
                }
                Attempt::Retry(m) => Attempt::Retry(m),
                Attempt::Fail(e) => Attempt::Fail(e),
            }
        })
    }

    /// PUTs a file's bytes (streamed from disk, never whole in memory); each
    /// retry starts the upload again. `progress` is advanced by bytes sent.
    pub fn put_file(
        &self,
        url: &str,
        path: &std::path::Path,
        size: u64,
        headers: &[(String, String)],
        progress: &indicatif::ProgressBar,
    ) -> Result<(), ClientError> {
        self.retry(url, &path.display().to_string(), |attempt| {
            let file = match std::fs::File::open(path) {
                Ok(f) => f,
                Err(e) => {
                    return Attempt::Fail(ClientError::Protocol {
                        url: url.into(),
                        msg: format!("{}: {e}", path.display()),
                    })
                }
            };
            if attempt > 0 {
                progress.set_position(
                    progress
                        .position()
                        .saturating_sub(size.min(progress.position())),
                );
            }
            let mut req = self
                .request("PUT", url)
                .set("Content-Length", &size.to_string())
                .set("Content-Type", "application/octet-stream");
            for (k, v) in headers {
                req = req.set(k, v);
            }
            let reader = progress.wrap_read(std::io::BufReader::with_capacity(1 << 20, file));
            match Self::classify(url, req.send(reader)) {
                Attempt::Ok(resp) => {
                    let _ = resp.into_string();
                    Attempt::Ok(())
                }
                Attempt::Retry(m) => Attempt::Retry(m),
                Attempt::Fail(e) => Attempt::Fail(e),
            }
        })
    }
}

fn repo_prefix(repo: &RepoId) -> String {
    format!("{}{}/", repo.kind().prefix(), repo.name())
}

/// Scheme, host and port of a URL (`http://h:1/a` → `http://h:1`).
fn origin(url: &str) -> Option<&str> {
    let after_scheme = url.find("://")? + 3;
    let end = url[after_scheme..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    Some(&url[..end])
}

/// True when `url` is on the same scheme, host and port as `endpoint`.
pub fn same_origin(url: &str, endpoint: &str) -> bool {
    match (origin(url), origin(endpoint)) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// The URL of a `Link: <url>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',')
        .find(|p| p.contains("rel=\"next\""))
        .and_then(|p| {
            let s = p.find('<')? + 1;
            let e = p.find('>')?;
            Some(p[s..e].to_string())
        })
}

#[cfg(test)]
mod origin_tests {
    #[test]
    fn only_the_same_scheme_host_and_port_is_the_same_origin() {
        let hub = "http://127.0.0.1:8090";
        assert!(super::same_origin(
            "http://127.0.0.1:8090/api/x?cursor=1",
            hub
        ));
        assert!(!super::same_origin("http://127.0.0.2:8090/api/x", hub));
        assert!(!super::same_origin("http://127.0.0.1:8091/api/x", hub));
        assert!(!super::same_origin("https://127.0.0.1:8090/api/x", hub));
        assert!(!super::same_origin(
            "http://127.0.0.1:8090@evil.example/api",
            hub
        ));
        assert!(!super::same_origin("/relative", hub));
    }
}
