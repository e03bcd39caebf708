use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use dtrain::hub::serve::{Faults, Options, Server};

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
    /// Require `Authorization: Bearer TOKEN` on every request
    #[arg(long, env = "DTRAIN_HUB_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// Do not log requests on stderr
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(args: HubArgs) -> Result<()> {
    let HubCmd::Serve(a) = args.cmd;
    let faults = Faults {
        fail_every: a.fail_every,
        drop_every: a.drop_every,
        slow_ms: a.slow_ms,
        fail_first: a.fail_first,
    };
    let server = Server::bind(
        &a.root,
        &a.addr,
        Options {
            token: a.token,
            faults,
            quiet: a.quiet,
        },
    )
    .with_context(|| format!("cannot serve {} on {}", a.root.display(), a.addr))?;
    println!("listening on http://{}", server.addr);
    std::io::stdout().flush()?;
    server.run()?;
    Ok(())
}
