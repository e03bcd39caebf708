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
//! Library errors are typed per module; [`code_of`] walks an error's chain and
//! maps the first dtrain error it recognises to its code.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    Ok = 0,
    Rejected = 1,
    BadInput = 2,
    Io = 3,
    Peer = 4,
    Numeric = 5,
}

/// Implemented by each module's error type.
pub trait Classify {
    fn code(&self) -> Code;
}

/// An error that carries its code explicitly (used at the edges).
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct Coded {
    pub code: Code,
    pub msg: String,
}

impl Coded {
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }
}

impl Classify for Coded {
    fn code(&self) -> Code {
        self.code
    }
}

impl Classify for crate::tokens::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::tensors::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::tokenizer::Error {
    fn code(&self) -> Code {
        match self {
            crate::tokenizer::Error::Download(_) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::tokenize::Error {
    fn code(&self) -> Code {
        match self {
            crate::tokenize::Error::Tokenizer(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::device::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::model::Error {
    fn code(&self) -> Code {
        match self {
            crate::model::Error::Io(_, e) => io_code(e),
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::optim::Error {
    fn code(&self) -> Code {
        use crate::optim::Error as E;
        match self {
            E::NonFinite => Code::Numeric,
            E::Io(_, e) => io_code(e),
            E::Model(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::status::Error {
    fn code(&self) -> Code {
        use crate::status::Error as E;
        match self {
            E::Io(_, e) => io_code(e),
            E::Ledger(e) => e.code(),
            E::Hub(e) => e.code(),
            E::NotWork(_) | E::Malformed(..) => Code::BadInput,
        }
    }
}

impl Classify for crate::log::BadFilter {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::ranges::ParseError {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::hub::client::ClientError {
    fn code(&self) -> Code {
        use crate::hub::client::ClientError as E;
        match self {
            E::Auth { .. } | E::NotFound { .. } => Code::BadInput,
            _ => Code::Io,
        }
    }
}

impl Classify for crate::data::Error {
    fn code(&self) -> Code {
        use crate::data::Error as E;
        match self {
            E::Hub(e) => e.code(),
            E::Io { .. } => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::keys::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::reduce::peers::Error {
    fn code(&self) -> Code {
        Code::BadInput
    }
}

impl Classify for crate::reduce::Error {
    fn code(&self) -> Code {
        use crate::reduce::Error as E;
        match self {
            E::Tensors(_)
            | E::Peers(_)
            | E::NotAPeer(_)
            | E::WrongKey { .. }
            | E::Layout(_)
            | E::Weight(_) => Code::BadInput,
            E::NonFinite => Code::Numeric,
            E::Io(..) | E::Listen { .. } => Code::Io,
            _ => Code::Peer,
        }
    }
}

impl Classify for crate::hub::publish::Error {
    fn code(&self) -> Code {
        use crate::hub::publish::Error as E;
        match self {
            E::Hub(e) => e.code(),
            E::Io(..) | E::Protocol(_) => Code::Io,
            E::Corrupt { .. } => Code::Rejected,
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::hub::store::StoreError {
    fn code(&self) -> Code {
        match self {
            crate::hub::store::StoreError::Io(_) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::ledger::Error {
    fn code(&self) -> Code {
        match self {
            crate::ledger::Error::Io(_, e) => io_code(e),
            crate::ledger::Error::Broken { .. } => Code::Rejected,
            crate::ledger::Error::Empty => Code::BadInput,
            crate::ledger::Error::Fork { .. } => Code::Rejected,
            crate::ledger::Error::NotFinite(_) => Code::BadInput,
            crate::ledger::Error::TooLarge(..) => Code::Rejected,
        }
    }
}

impl Classify for crate::plot::Error {
    fn code(&self) -> Code {
        match self {
            crate::plot::Error::Io(_, e) => io_code(e),
            crate::plot::Error::Draw(..) => Code::Io,
            _ => Code::BadInput,
        }
    }
}

/// Tries each registered error type on one link of a chain.
macro_rules! classify_chain {
    ($cause:expr, $($t:ty),* $(,)?) => {
        $( if let Some(e) = $cause.downcast_ref::<$t>() { return e.code(); } )*
    };
}

/// The exit code for an error: the first dtrain error in its chain decides;
/// a bare I/O error is [`Code::Io`]; anything else is [`Code::BadInput`].
pub fn code_of(err: &anyhow::Error) -> Code {
    code_of_with(err, |_| None)
}

/// [`code_of`], with `more` asked first about each link of the chain: the
/// torch crate classifies its own error types this way.
pub fn code_of_with(
    err: &anyhow::Error,
    more: impl Fn(&(dyn std::error::Error + 'static)) -> Option<Code>,
) -> Code {
    // a full disk is an I/O failure whichever writer met it
    if err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|e| e == libc::ENOSPC || e == libc::EDQUOT)
    }) {
        return Code::Io;
    }
    for cause in err.chain() {
        if let Some(code) = more(cause) {
            return code;
        }
        classify_chain!(
            cause,
            Coded,
            crate::tokens::Error,
            crate::tensors::Error,
            crate::tokenizer::Error,
            crate::tokenize::Error,
            crate::device::Error,
            crate::model::Error,
            crate::optim::Error,
            crate::ranges::ParseError,
            crate::data::Error,
            crate::hub::client::ClientError,
            crate::reduce::Error,
            crate::reduce::peers::Error,
            crate::keys::Error,
            crate::hub::publish::Error,
            crate::hub::store::StoreError,
            crate::ledger::Error,
            crate::plot::Error,
            crate::status::Error,
            crate::log::BadFilter,
        );
    }
    match err.chain().find_map(|c| c.downcast_ref::<std::io::Error>()) {
        Some(e) => io_code(e),
        None => Code::BadInput,
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
pub fn message(err: &anyhow::Error) -> String {
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
