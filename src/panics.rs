//! Turning libtorch failures into errors.
//!
//! tch's infallible tensor operations panic when libtorch throws (a CUDA
//! out-of-memory, a shape error). A command must end with one clear error line,
//! not a panic dump, so compute sections run under [`catch_torch`], and the
//! binary's panic hook ([`install_hook`]) stays quiet for panics that such a
//! section will report itself.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};

thread_local! {
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// A panic caught in a compute section: libtorch's message, cleaned.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TorchPanic(pub String);

/// Runs `f`; a panic inside becomes `Err` with its message.
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T, TorchPanic> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    r.map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        TorchPanic(torch_message(&msg))
    })
}

/// The useful line of a libtorch error: without the unwrap wrapper, the
/// `Torch("…")` debug quoting, the `[enforce fail …]` prefix and the C++
/// backtrace that follows.
pub fn torch_message(msg: &str) -> String {
    let mut m = msg.trim_start_matches("called `Result::unwrap()` on an `Err` value: ");
    if let Some(inner) = m.strip_prefix("Torch(\"") {
        m = inner;
    }
    let cut = [m.find("\\n"), m.find('\n')]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(m.len());
    let mut line = m[..cut].trim().trim_end_matches("\")").to_string();
    if line.starts_with("[enforce fail") {
        if let Some(i) = line.find("]. ").or_else(|| line.find(". ")) {
            line = line[i + 2..].trim().to_string();
        }
        if let Some(i) = line.find("err == 0. ") {
            line = line[i + 10..].to_string();
        }
    }
    line
}

/// Whether a message is an out-of-memory report from libtorch.
pub fn is_oom(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("out of memory") || m.contains("outofmemory") || m.contains("can't allocate memory")
}

/// Installs a panic hook that prints nothing for guarded sections and the
/// default report otherwise.
pub fn install_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if GUARDED.with(|g| g.get()) == 0 {
            default(info);
        }
    }));
}

/// Peak resident set size of this process, bytes.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as u64 * 1024
}

#[cfg(test)]
mod tests {
    #[test]
    fn torch_messages_are_cut_to_one_line() {
        let raw = "called `Result::unwrap()` on an `Err` value: Torch(\"[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 bytes.\\nframe #0: c10::...\")";
        assert_eq!(
            super::torch_message(raw),
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 12 bytes."
        );
        assert_eq!(
            super::torch_message("shape mismatch\nframe #0"),
            "shape mismatch"
        );
    }
}
