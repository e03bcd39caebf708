//! Exit codes of the torch crate's errors (see [`dtrain::exit`]).

use dtrain::exit::{Classify, Code};

impl Classify for crate::train::Error {
    fn code(&self) -> Code {
        use crate::train::Error as E;
        match self {
            E::NonFinite(_) | E::NonFiniteGrad => Code::Numeric,
            E::Io(..) | E::OutOfMemory { .. } | E::TorchPanic(_) => Code::Io,
            E::Model(e) => e.code(),
            _ => Code::BadInput,
        }
    }
}

impl Classify for crate::verify::Error {
    fn code(&self) -> Code {
        match self {
            crate::verify::Error::Data(e) => match e.code() {
                Code::Io => Code::Io,
                _ => Code::BadInput,
            },
            _ => Code::BadInput,
        }
    }
}

/// The exit code for an error from any dtrain library, this one included.
pub fn code_of(err: &anyhow::Error) -> Code {
    dtrain::exit::code_of_with(err, |cause| {
        if let Some(e) = cause.downcast_ref::<crate::train::Error>() {
            return Some(e.code());
        }
        cause
            .downcast_ref::<crate::verify::Error>()
            .map(Classify::code)
    })
}
