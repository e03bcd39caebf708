use crate::exit::{CliError, Code, Result};
use dtrain::relay::{Limits, Relay};

#[derive(clap::Args, Debug)]
#[command(
    after_long_help = "Example (on the validator, or any peer others can reach):
  dtrain relay --listen 0.0.0.0:7100
A peer behind NAT has `relay = \"HOST:7100\"` instead of an address in the peers file
(`dtrain roster announce --relay` asks for it); it parks connections here and the others
reach it through them. The relay copies bytes only: the reduce handshake and every
frame's MAC stay end to end, so it can drop or delay a link but not read or forge one."
)]
pub struct RelayArgs {
    /// HOST:PORT to listen on
    #[arg(long)]
    listen: String,
    /// Most connections held at once (parked and spliced)
    #[arg(long, default_value_t = Limits::default().connections)]
    max_connections: usize,
    /// Most connections from one address
    #[arg(long, default_value_t = Limits::default().per_address)]
    max_per_ip: usize,
}

pub fn run(args: RelayArgs) -> Result<()> {
    let limits = Limits {
        connections: args.max_connections.max(2),
        per_address: args.max_per_ip.max(2),
        ..Limits::default()
    };
    let relay = Relay::bind(&args.listen, limits)
        .map_err(|e| CliError::new(Code::Io, format!("--listen {}: {e}", args.listen)))?;
    let addr = relay.local_addr()?;
    tracing::info!("relay listening on {addr}");
    relay.run();
    Ok(())
}
