//! Log lines on stderr, through `tracing`.
//!
//! Why one place: every command gets the same controls, the ones operators of
//! Unix daemons expect. `-v` raises dtrain's level (info, then debug, then
//! trace for every crate), `-q` lowers it to errors and silences the summary
//! lines, and `DTRAIN_LOG` takes an env-filter directive
//! (`dtrain::reduce=debug,warn`) that overrides both. By default a command
//! logs warnings only, so a pipe sees nothing but what went wrong (retries,
//! peers dropped); `hub serve` logs requests at info, as servers do.
//!
//! Log lines and progress bars share stderr: a line is written with the bars
//! suspended, so neither tears the other.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_subscriber::EnvFilter;

/// The environment variable holding an env-filter directive.
pub const ENV: &str = "DTRAIN_LOG";

static QUIET: AtomicBool = AtomicBool::new(false);

/// How much a command says on stderr, from `-v`/`-q`.
#[derive(Clone, Copy, Debug)]
pub struct Verbosity {
    /// How many `-v`.
    pub verbose: u8,
    /// `-q`: errors only, no summary line.
    pub quiet: bool,
    /// The level with neither (a server logs at info).
    pub default: tracing::Level,
}

/// `DTRAIN_LOG` could not be parsed.
#[derive(Debug, thiserror::Error)]
#[error("{ENV}: {0}")]
pub struct BadFilter(String);

/// The filter directive `-v`/`-q` ask for.
pub fn directive(v: Verbosity) -> String {
    use tracing::Level;
    if v.quiet {
        return "error".into();
    }
    let ours = match (v.default, v.verbose) {
        (_, 0) => v.default,
        (Level::INFO | Level::DEBUG, 1) | (_, 2) => Level::DEBUG,
        (_, 1) => Level::INFO,
        _ => return "trace".into(),
    };
    format!("warn,dtrain={}", ours.as_str().to_ascii_lowercase())
}

/// Installs the subscriber: `DTRAIN_LOG` if set, else what `v` asks for.
pub fn init(v: Verbosity) -> Result<(), BadFilter> {
    QUIET.store(v.quiet, Ordering::Relaxed);
    if v.quiet {
        crate::progress::hide();
    }
    let filter = match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| BadFilter(e.to_string()))?
        }
        _ => EnvFilter::new(directive(v)),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| BarAwareStderr)
        .with_ansi(ansi)
        .without_time()
        .try_init();
    Ok(())
}

/// `-q` was given: commands print no summary line.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// stderr, with the progress bars suspended while a line is written.
struct BarAwareStderr;

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::progress::suspend(|| std::io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    fn at(verbose: u8, quiet: bool, default: Level) -> String {
        directive(Verbosity {
            verbose,
            quiet,
            default,
        })
    }

    #[test]
    fn each_v_raises_the_level_one_step() {
        assert_eq!(at(0, false, Level::WARN), "warn,dtrain=warn");
        assert_eq!(at(1, false, Level::WARN), "warn,dtrain=info");
        assert_eq!(at(2, false, Level::WARN), "warn,dtrain=debug");
        assert_eq!(at(3, false, Level::WARN), "trace");
        assert_eq!(at(0, false, Level::INFO), "warn,dtrain=info");
        assert_eq!(at(1, false, Level::INFO), "warn,dtrain=debug");
        assert_eq!(at(0, true, Level::INFO), "error");
    }
}
