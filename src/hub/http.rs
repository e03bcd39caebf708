//! A small HTTP/1.1 server core for the local hub: request parsing (httparse),
//! bodies by Content-Length or chunked encoding, keep-alive, and responses
//! streamed from memory or from a file range.
//!
//! The hub is a test stand-in as well as a mirror, and its tests need to
//! misbehave on purpose (cut a response or an upload half way, stall), so the
//! socket stays in our hands rather than behind a framework.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Request heads larger than this are refused (checked while reading, so a
/// client cannot make a line grow past it).
const MAX_HEAD: usize = 64 * 1024;
/// Longest chunk-size line, and all trailers of one body together.
const MAX_CHUNK_LINE: u64 = 1024;
const MAX_TRAILERS: u64 = 16 * 1024;

/// The socket, read under a deadline: each read may wait only for what is
/// left of the time the current request was given, so a client that sends
/// one byte a second cannot hold its connection longer than that.
struct DeadlineStream {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request deadline passed",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Reads one line into `out` reading at most `limit` bytes; an error when the
/// line is longer.
fn read_line_bounded(r: &mut impl BufRead, out: &mut Vec<u8>, limit: u64) -> io::Result<usize> {
    let n = r.take(limit).read_until(b'\n', out)?;
    if n as u64 == limit && !out.ends_with(b"\n") {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// Percent-decoded path, without the query.
    pub path: String,
    /// The raw path as sent (for redirects and logs).
    pub raw_path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub content_length: Option<u64>,
    pub chunked: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

pub fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// One client connection.
pub struct Conn {
    reader: BufReader<DeadlineStream>,
    pub writer: TcpStream,
    /// Bytes of the current request's body not yet read.
    body_left: BodyState,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum BodyState {
    None,
    Length(u64),
    Chunked { left_in_chunk: u64, done: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("request head too large")]
    TooLarge,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Conn {
    pub fn new(stream: TcpStream) -> io::Result<Self> {
        let writer = stream.try_clone()?;
        let reader = DeadlineStream {
            stream,
            deadline: Instant::now(),
        };
        Ok(Self {
            reader: BufReader::with_capacity(256 * 1024, reader),
            writer,
            body_left: BodyState::None,
        })
    }

    /// From now on, reads fail once `within` has passed.
    pub fn set_deadline(&mut self, within: Duration) {
        self.reader.get_mut().deadline = Instant::now() + within;
    }

    /// Reads the next request head; `Ok(None)` when the client closed cleanly.
    pub fn read_request(&mut self) -> Result<Option<Request>, ParseError> {
        let mut head = Vec::with_capacity(1024);
        loop {
            let room = (MAX_HEAD - head.len()) as u64 + 1;
            let n = (&mut self.reader).take(room).read_until(b'\n', &mut head)?;
            if head.len() > MAX_HEAD {
                return Err(ParseError::TooLarge);
            }
            if n == 0 {
                return if head.is_empty() {
                    Ok(None)
                } else {
                    Err(ParseError::Malformed("truncated head".into()))
                };
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
            if head == b"\r\n" || head == b"\n" {
                head.clear(); // tolerate stray CRLF between requests
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Err(ParseError::Malformed("incomplete head".into()))
            }
            Err(e) => return Err(ParseError::Malformed(e.to_string())),
        }
        let raw_path = req.path.unwrap_or("/").to_string();
        let (p, q) = raw_path.split_once('?').unwrap_or((&raw_path, ""));
        let query = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
            })
            .collect();
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect();
        let find = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        let chunked =
            find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let content_length = match find("content-length") {
            Some(v) => Some(
                v.parse::<u64>()
                    .map_err(|_| ParseError::Malformed("bad content-length".into()))?,
            ),
            None => None,
        };
        self.body_left = if chunked {
            BodyState::Chunked {
                left_in_chunk: 0,
                done: false,
            }
        } else {
            match content_length {
                Some(n) if n > 0 => BodyState::Length(n),
                _ => BodyState::None,
            }
        };
        Ok(Some(Request {
            method: req.method.unwrap_or("GET").to_string(),
            path: decode(p),
            raw_path: raw_path.clone(),
            query,
            headers,
            content_length,
            chunked,
        }))
    }

    /// True when the whole body of the current request has been read.
    pub fn body_done(&self) -> bool {
        matches!(
            self.body_left,
            BodyState::None | BodyState::Length(0) | BodyState::Chunked { done: true, .. }
        )
    }

    /// Reads the whole body, refusing more than `cap` bytes.
    pub fn read_body(&mut self, cap: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = self.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() as u64 + n as u64 > cap {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("request body over {cap} bytes"),
                ));
            }
            out.extend_from_slice(&buf[..n]);
        }
    }
}

/// Reading from a `Conn` reads the current request's body.
impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.body_left {
            BodyState::None => Ok(0),
            BodyState::Length(left) => {
                if left == 0 {
                    return Ok(0);
                }
                let want = buf.len().min(left as usize);
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "body ended early",
                    ));
                }
                self.body_left = BodyState::Length(left - n as u64);
                Ok(n)
            }
            BodyState::Chunked { done: true, .. } => Ok(0),
            BodyState::Chunked { left_in_chunk, .. } => {
                let mut left = left_in_chunk;
                if left == 0 {
                    let mut line = Vec::new();
                    read_line_bounded(&mut self.reader, &mut line, MAX_CHUNK_LINE)?;
                    if line.trim_ascii().is_empty() {
                        line.clear();
                        read_line_bounded(&mut self.reader, &mut line, MAX_CHUNK_LINE)?;
                    }
                    let line = String::from_utf8_lossy(&line);
                    let size = line.trim().split(';').next().unwrap_or("");
                    left = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "bad chunk size")
                    })?;
                    if left == 0 {
                        // trailers until an empty line, all of them bounded together
                        let mut trailers = (&mut self.reader).take(MAX_TRAILERS);
                        loop {
                            let mut t = Vec::new();
                            let n = trailers.read_until(b'\n', &mut t)?;
                            if n == 0 || t.trim_ascii().is_empty() {
                                break;
                            }
                            if trailers.limit() == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "trailers too long",
                                ));
                            }
                        }
                        self.body_left = BodyState::Chunked {
                            left_in_chunk: 0,
                            done: true,
                        };
                        return Ok(0);
                    }
                }
                let want = buf.len().min(left as usize);
                let n = self.reader.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk ended early",
                    ));
                }
                left -= n as u64;
                if left == 0 {
                    let mut crlf = [0u8; 2];
                    self.reader.read_exact(&mut crlf)?;
                }
                self.body_left = BodyState::Chunked {
                    left_in_chunk: left,
                    done: false,
                };
                Ok(n)
            }
        }
    }
}

/// What a response carries.
pub enum Body {
    Empty,
    Bytes(Vec<u8>),
    File { file: File, start: u64, len: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16, body: Body) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body,
        }
    }

    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self::new(status, Body::Bytes(serde_json::to_vec(v).expect("json")))
            .header("Content-Type", "application/json")
    }

    /// The Hub's error shape: `{"error": "..."}` plus the X-Error-Message header.
    pub fn error(status: u16, msg: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": msg })).header("X-Error-Message", msg)
    }

    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_string(), v.into()));
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Writes a response. `head_only` sends the headers of a GET without its body;
/// `cut_after` stops after that many body bytes (fault injection; the caller
/// then closes the connection). Returns the body bytes sent.
pub fn write_response(
    w: &mut TcpStream,
    resp: Response,
    head_only: bool,
    close: bool,
    cut_after: Option<u64>,
) -> io::Result<u64> {
    let len = resp.body.len();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Length: {len}\r\n",
        resp.status,
        reason(resp.status)
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{}: {}\r\n", header_safe(k), header_safe(v)));
    }
    head.push_str(if close {
        "Connection: close\r\n\r\n"
    } else {
        "Connection: keep-alive\r\n\r\n"
    });
    let mut bw = io::BufWriter::with_capacity(256 * 1024, &mut *w);
    bw.write_all(head.as_bytes())?;
    let limit = if head_only {
        0
    } else {
        cut_after.unwrap_or(len).min(len)
    };
    let mut sent = 0u64;
    match resp.body {
        Body::Empty => {}
        Body::Bytes(b) => {
            bw.write_all(&b[..limit as usize])?;
            sent = limit;
        }
        Body::File {
            mut file, start, ..
        } => {
            if limit > 0 {
                file.seek(SeekFrom::Start(start))?;
                sent = io::copy(&mut (&mut file).take(limit), &mut bw)?;
            }
        }
    }
    bw.flush()?;
    Ok(sent)
}

/// `text` without control characters: a header value built from a client's
/// words (an error message quoting its path) cannot add header lines.
pub fn header_safe(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars().filter(|c| !c.is_control()).collect()
    } else {
        text.into()
    }
}

/// Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range against `size`.
/// `Ok(None)`: no Range header; `Err(())`: unsatisfiable or malformed.
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(h) = header else { return Ok(None) };
    let spec = h.trim().strip_prefix("bytes=").ok_or(())?;
    if spec.contains(',') {
        return Err(()); // multi-range is not served
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        (start, end)
    };
    if size == 0 || start >= size || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 9))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 9))));
        assert_eq!(parse_range(Some("bytes=10-12"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Err(()));
        assert_eq!(parse_range(Some("items=0-1"), 10), Err(()));
    }

    #[test]
    fn header_values_lose_control_characters() {
        assert_eq!(super::header_safe("a\r\nSet-Cookie: x"), "aSet-Cookie: x");
        assert_eq!(super::header_safe("plain"), "plain");
    }
}
