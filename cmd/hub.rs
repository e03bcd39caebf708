use std::io::Write;
use std::path::PathBuf;

use crate::exit::{CliError, Code};
use crate::exit::{Context, Result};
use dtrain::hub::serve::{Faults, Limits, Options, Server, WritersFile};

#[derive(clap::Args, Debug)]
pub struct HubArgs {
    #[command(subcommand)]
    cmd: HubCmd,
}

#[derive(clap::Subcommand, Debug)]
enum HubCmd {
    /// Serve a folder over the Hugging Face Hub HTTP API (a local hub / mirror)
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Folder holding datasets/{org}/{name}/… and {org}/{name}/… (models)
    #[arg(long)]
    root: PathBuf,
    /// Address to listen on (port 0 picks a free port; the URL is printed)
    #[arg(long, default_value = "127.0.0.1:8090")]
    addr: String,
    /// Require `Authorization: Bearer TOKEN` on every request; this token may write every repo
    #[arg(long, env = "DTRAIN_HUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Writers' tokens: a TOML file of `[[writer]]` tables (name, token, write = ["org/repo", "org/*"]);
    /// each token reads everything and writes only the repos it names
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Most connections open at once from one address (more are answered 503)
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_per_ip: usize,
    /// Most connections open at once in all (more are answered 503)
    #[arg(long, value_name = "N", default_value_t = 512)]
    max_connections: usize,
    /// Seconds a client has to send a request's head, idle keep-alive time included
    #[arg(long, value_name = "SECS", default_value_t = 20)]
    head_timeout: u64,
    /// Fault injection: answer 503 to every K-th request
    #[arg(long, value_name = "K")]
    fail_every: Option<u64>,
    /// Fault injection: answer 503 to the first N requests
    #[arg(long, value_name = "N", default_value_t = 0)]
    fail_first: u64,
    /// Fault injection: cut every K-th request half way through its body
    #[arg(long, value_name = "K")]
    drop_every: Option<u64>,
    /// Fault injection: wait MS milliseconds before every response
    #[arg(long, value_name = "MS", default_value_t = 0)]
    slow_ms: u64,
}

pub fn run(args: HubArgs) -> Result<()> {
    let HubCmd::Serve(a) = args.cmd;
    let faults = Faults {
        fail_every: a.fail_every,
        drop_every: a.drop_every,
        slow_ms: a.slow_ms,
        fail_first: a.fail_first,
    };
    let writers = match &a.tokens {
        Some(path) => read_writers(path)?,
        None => Vec::new(),
    };
    let limits = Limits {
        max_connections: a.max_connections.max(1),
        max_per_ip: a.max_per_ip.max(1),
        head_timeout: std::time::Duration::from_secs(a.head_timeout.clamp(1, 3600)),
    };
    let server = Server::bind(
        &a.root,
        &a.addr,
        Options {
            token: a.token,
            writers,
            faults,
            limits,
        },
    )
    .with_context(|| format!("cannot serve {} on {}", a.root.display(), a.addr))?;
    println!("listening on http://{}", server.addr);
    std::io::stdout().flush()?;
    server.run()?;
    Ok(())
}

/// The `--tokens` file: every writer's token, and what it may write.
fn read_writers(path: &std::path::Path) -> Result<Vec<dtrain::hub::serve::Writer>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::new(Code::BadInput, format!("--tokens {}: {e}", path.display())))?;
    let file: WritersFile = toml::from_str(&text).map_err(|e| {
        CliError::new(
            Code::BadInput,
            format!("--tokens {}: {}", path.display(), e.message()),
        )
    })?;
    if let Some(w) = file.writer.iter().find(|w| w.token.len() < 16) {
        return Err(CliError::new(
            Code::BadInput,
            format!(
                "--tokens {}: {}'s token is shorter than 16 characters",
                path.display(),
                w.name
            ),
        ));
    }
    Ok(file.writer)
}
