//! Exit codes: one table for every command, so scripts can tell failures apart.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | verification failed / a result was rejected |
//! | 2 | usage error or bad input (including a missing or corrupt input file) |
//! | 3 | I/O or network failure after retries |
//! | 4 | peer or round failure (`reduce`) |
//! | 5 | numeric failure (NaN/Inf) |
//!
//! Why a trait and `From`, not a list of types tried at run time: every
//! command returns [`CliError`], and a library error becomes one only
//! through `From`, which exists for the error types that implement
//! [`Classify`]. An error type without a code does not compile where a
//! command uses `?` on it; it cannot silently become exit 2.

use std::fmt::Display;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Rejected = 1,
    BadInput = 2,
    Io = 3,
    Peer = 4,
    Numeric = 5,
}

/// The exit code of an error type; implemented here for each library's errors.
pub trait Classify {
    fn code(&self) -> Code;
}

/// A command's failure: the error, with its causes, and its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: Code,
    pub error: anyhow::Error,
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl<E: Classify + std::error::Error + Send + Sync + 'static> From<E> for CliError {
    fn from(e: E) -> Self {
        // a full disk is an I/O failure whichever writer met it
        let code = if full_disk(&e) { Code::Io } else { e.code() };
        CliError {
            code,
            error: e.into(),
        }
    }
}

impl CliError {
    pub fn new(code: Code, msg: impl Display) -> Self {
        CliError {
            code,
            error: anyhow::anyhow!("{msg}"),
        }
    }

    /// A usage error or bad input (exit 2).
    pub fn bad_input(msg: impl Display) -> Self {
        Self::new(Code::BadInput, msg)
    }

    /// Says what was being done (or which flag named the input); the code stays.
    pub fn context(self, c: impl Display + Send + Sync + 'static) -> Self {
        CliError {
            code: self.code,
            error: self.error.context(c),
        }
    }

    /// The one line printed for the error.
    pub fn message(&self) -> String {
        message(&self.error)
    }
}

/// `return Err(bad_input!(...))`: a usage error or bad input, formatted.
macro_rules! bad_input {
    ($($t:tt)*) => { $crate::exit::CliError::bad_input(format!($($t)*)) };
}
pub(crate) use bad_input;

/// Context on any error that has a code.
pub trait Context<T> {
    fn context(self, c: impl Display + Send + Sync + 'static) -> Result<T>;
    fn with_context<C: Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<CliError>> Context<T> for std::result::Result<T, E> {
    fn context(self, c: impl Display + Send + Sync + 'static) -> Result<T> {
        self.map_err(|e| e.into().context(c))
    }

    fn with_context<C: Display + Send + Sync + 'static>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

fn full_disk(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        let errno = c
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error);
        if errno.is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Parsing JSON someone gave is bad input (serialising dtrain's own types
/// cannot fail).
impl Classify for serde_json::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for std::io::Error {
    fn code(&self) -> Code {
        io_code(self)
    }
}

impl Classify for dtrain::tokens::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::tensors::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::tokenizer::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::tokenizer::Error::Download(_) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::tokenize::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::tokenize::Error::Tokenizer(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::device::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::model::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::model::Error::Io(_, e) => io_code(e),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::optim::Error {
    fn code(&self) -> Code {
        use dtrain::optim::Error as E;
        match self {
            E::NonFinite => Code::Numeric,
            E::Io(_, e) => io_code(e),
            E::Model(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::status::Error {
    fn code(&self) -> Code {
        use dtrain::status::Error as E;
        match self {
            E::Io(_, e) => io_code(e),
            E::Ledger(e) => e.code(),
            E::Hub(e) => e.code(),
            E::NotWork(_) | E::Malformed(..) => Code::BadInput,
        }
    }
}

impl Classify for dtrain::log::BadFilter {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::ranges::ParseError {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::hub::client::ClientError {
    fn code(&self) -> Code {
        use dtrain::hub::client::ClientError as E;
        match self {
            E::Auth { .. } | E::NotFound { .. } => Code::BadInput,
            _ => Code::Io,
        }
    }
}

impl Classify for dtrain::data::Error {
    fn code(&self) -> Code {
        use dtrain::data::Error as E;
        match self {
            E::Hub(e) => e.code(),
            E::Io { .. } => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::keys::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::reduce::peers::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::roster::Error {
    fn code(&self) -> Code {
        use dtrain::roster::Error as E;
        match self {
            E::Signature(_) | E::Epoch { .. } => Code::Rejected,
            E::Read(dtrain::fsio::JsonFileError::Io { source, .. }) => io_code(source),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::reduce::Error {
    fn code(&self) -> Code {
        use dtrain::reduce::Error as E;
        match self {
            E::Tensors(_)
            | E::Peers(_)
            | E::NotAPeer(_)
            | E::WrongKey { .. }
            | E::Layout(_)
            | E::Weight(_) => Code::BadInput,
            E::NonFinite => Code::Numeric,
            E::Io(..) | E::Listen { .. } => Code::Io,
            E::Residual(e) => e.code(),
            _ => Code::Peer,
        }
    }
}

impl Classify for dtrain::hub::publish::Error {
    fn code(&self) -> Code {
        use dtrain::hub::publish::Error as E;
        match self {
            E::Hub(e) => e.code(),
            E::Io(..) | E::Protocol(_) => Code::Io,
            E::Corrupt { .. } => Code::Rejected,
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::hub::store::StoreError {
    fn code(&self) -> Code {
        match self {
            dtrain::hub::store::StoreError::Io(_) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::ledger::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::ledger::Error::Io(_, e) => io_code(e),
            dtrain::ledger::Error::Broken { .. } => Code::Rejected,
            dtrain::ledger::Error::Empty => Code::BadInput,
            dtrain::ledger::Error::Fork { .. } => Code::Rejected,
            dtrain::ledger::Error::NotFinite(_) => Code::BadInput,
            dtrain::ledger::Error::TooLarge(..) => Code::Rejected,
        }
    }
}

impl Classify for dtrain::plot::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::plot::Error::Io(_, e) => io_code(e),
            dtrain::plot::Error::Draw(..) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

#[cfg(dtrain_torch)]
impl Classify for dtrain_torch::train::Error {
    fn code(&self) -> Code {
        use dtrain_torch::train::Error as E;
        match self {
            E::NonFinite(_) | E::NonFiniteGrad => Code::Numeric,
            E::Io(..) | E::OutOfMemory { .. } | E::TorchPanic(_) => Code::Io,
            E::Model(e) => e.code(),
            E::InnerOptim(e) => e.code(),
            E::InnerState(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

#[cfg(dtrain_torch)]
impl Classify for dtrain_torch::verify::Error {
    fn code(&self) -> Code {
        use dtrain_torch::verify::Error as E;
        match self {
            E::Verify(e) => e.code(),
            E::Train(e) => e.code(),
            E::Tokens(e) => e.code(),
            E::Torch(_) => Code::Io,
            E::Model(e) => e.code(),
        }
    }
}

impl Classify for dtrain::inner::StateError {
    fn code(&self) -> Code {
        use dtrain::inner::StateError as E;
        match self {
            E::Io(..) => Code::Io,
            E::Tensors(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::reduce::residual::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::reduce::residual::Error::Tensors(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for dtrain::reduce::BadClip {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for dtrain::score::Error {
    fn code(&self) -> Code {
        match self {
            dtrain::score::Error::Io { source, .. } => io_code(source),
            _ => Code::BadInput,
        }
    }
}

/// A receipt's or a transcript's file (`dtrain::fsio::read_json`).
impl Classify for dtrain::fsio::JsonFileError {
    fn code(&self) -> Code {
        match self {
            dtrain::fsio::JsonFileError::Io { source, .. } => io_code(source),
            _ => Code::BadInput,
        }
    }
}

/// Only the validator's own inputs fail verify (a miner's defect is a FAIL verdict).
impl Classify for dtrain::verify::Error {
    fn code(&self) -> Code {
        use dtrain::verify::Error as E;
        match self {
            E::Io { source, .. } => io_code(source),
            E::Data(e) => match e.code() {
                Code::Io => Code::Io,
                _ => Code::BadInput,
            },
            E::Tensors(e) => e.code(),
            E::Tokens(e) => e.code(),
            E::Tokenizer(e) => e.code(),
        }
    }
}

/// A path the caller named that is not there or not readable is bad input;
/// any other I/O failure is an I/O failure.
fn io_code(e: &std::io::Error) -> Code {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotFound | K::PermissionDenied | K::NotADirectory | K::IsADirectory => Code::BadInput,
        _ => Code::Io,
    }
}

/// The one line printed for an error: its causes joined by ": ", each said
/// once (an error whose message already quotes its cause does not repeat it).
fn message(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let mut text = cause.to_string();
        // the OS's error number says nothing its text does not
        while let Some(at) = text.find(" (os error ") {
            match text[at..].find(')') {
                Some(end) => text.replace_range(at..at + end + 1, ""),
                None => break,
            }
        }
        if line.contains(&text) {
            continue;
        }
        // a cause that starts with the line's last word ("--tokens a.bin",
        // then "a.bin: No such file") says it once
        let subject = line.rsplit([' ', ':']).next().unwrap_or("");
        if !subject.is_empty() {
            if let Some(rest) = text.strip_prefix(&format!("{subject}: ")) {
                text = rest.to_string();
            }
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
