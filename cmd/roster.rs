use std::path::PathBuf;

use crate::common::write_output;
use crate::exit::{CliError, Result};
use dtrain::keys::{Key, PublicKey};
use dtrain::reduce::peers::{self, Peer};
use dtrain::roster::{self, Announcement, Registry, Rules, Signed};

#[derive(clap::Args, Debug)]
#[command(after_long_help = "An epoch, step by step:
  miner:      dtrain roster announce --key m.key --name miner-3 --addr 203.0.113.7:7000 --epoch 12 -o announce.json
              (push it to the miner's repo; --relay instead of --addr behind NAT)
  validator:  dtrain roster decide --key v.key --name validator --addr 198.51.100.2:7000 --epoch 12 \\
                --relay 198.51.100.2:7100 -o roster.json announcements/*.json
              (push roster.json with the epoch's model tag)
  everyone:   dtrain roster show roster.json --validator-pubkey HEX --epoch 12 --peers-toml peers.toml")]
pub struct RosterArgs {
    #[command(subcommand)]
    cmd: RosterCmd,
}

#[derive(clap::Subcommand, Debug)]
enum RosterCmd {
    /// Sign this miner's announcement for an epoch (name, key, address or relay)
    Announce(AnnounceArgs),
    /// The validator: decide the epoch's roster from the announcements, signed
    Decide(DecideArgs),
    /// Check a roster (pinned validator key, epoch) and print it or write its peers file
    Show(ShowArgs),
}

#[derive(clap::Args, Debug)]
struct AnnounceArgs {
    /// The miner's key (its public key is its identity in the roster)
    #[arg(long)]
    key: PathBuf,
    /// Its peer name
    #[arg(long)]
    name: String,
    /// HOST:PORT where it accepts reduce connections
    #[arg(long, required_unless_present = "relay", conflicts_with = "relay")]
    addr: Option<String>,
    /// It accepts no connections: reach it through the validator's relay
    #[arg(long)]
    relay: bool,
    /// The epoch this announcement is for
    #[arg(long)]
    epoch: u64,
    /// The uid it holds (the validator believes the registry)
    #[arg(long)]
    uid: Option<u64>,
    /// Measured upload rate, MB/s (a capacity hint)
    #[arg(long, value_name = "MB/S")]
    upload: Option<f64>,
    /// Write here (atomically) instead of stdout
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct DecideArgs {
    /// The miners' announcement files (those that arrived before the cut-off)
    announcements: Vec<PathBuf>,
    /// The validator's key (signs the roster)
    #[arg(long)]
    key: PathBuf,
    /// The validator's peer name (a member, weight 0)
    #[arg(long)]
    name: String,
    /// HOST:PORT where the validator accepts reduce connections
    #[arg(long)]
    addr: String,
    /// The epoch
    #[arg(long)]
    epoch: u64,
    /// Which keys hold which uids (TOML: [[miner]] uid, pubkey); without it any signed announcement may join
    #[arg(long, value_name = "FILE")]
    registry: Option<PathBuf>,
    /// Leave these miners out (comma-separated names; e.g. a FAIL streak)
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    exclude: Vec<String>,
    /// Most miners in the round (the fastest announced uploads first)
    #[arg(long, default_value_t = 64)]
    max_members: usize,
    /// The relay offered to miners that announce no address (HOST:PORT of `dtrain relay`)
    #[arg(long, value_name = "HOST:PORT")]
    relay: Option<String>,
    /// The round's reduce deadline, seconds
    #[arg(long, default_value_t = 120.0)]
    deadline: f64,
    /// Most averaging weight (sequences) one member may announce
    #[arg(long, default_value_t = peers::DEFAULT_MAX_WEIGHT)]
    max_weight: u64,
    /// Write the signed roster here (atomically)
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
struct ShowArgs {
    /// The roster file (as pulled from the model repo)
    roster: PathBuf,
    /// The validator's public key (pinned: a roster signed by another key is refused)
    #[arg(long, value_name = "HEX")]
    validator_pubkey: PublicKey,
    /// The epoch it must be for
    #[arg(long)]
    epoch: u64,
    /// Write the peers file reduce reads (atomically) instead of printing the roster
    #[arg(long, value_name = "FILE")]
    peers_toml: Option<PathBuf>,
}

pub fn run(args: RosterArgs) -> Result<()> {
    match args.cmd {
        RosterCmd::Announce(a) => announce(a),
        RosterCmd::Decide(a) => decide(a),
        RosterCmd::Show(a) => show(a),
    }
}

fn announce(a: AnnounceArgs) -> Result<()> {
    let key = Key::load(&a.key)?;
    peers::check_name(&a.name).map_err(CliError::bad_input)?;
    if let Some(addr) = &a.addr {
        peers::check_addr(addr).map_err(|why| CliError::bad_input(format!("--addr: {why}")))?;
    }
    if a.upload.is_some_and(|u| !(u > 0.0 && u.is_finite())) {
        return Err(CliError::bad_input("--upload must be a positive number"));
    }
    let body = Announcement {
        name: a.name,
        pubkey: key.public(),
        epoch: a.epoch,
        addr: a.addr,
        uid: a.uid,
        upload: a.upload,
    };
    write_output(a.output.as_deref(), &Signed::sign(body, &key).to_json())
}

fn decide(a: DecideArgs) -> Result<()> {
    let key = Key::load(&a.key)?;
    peers::check_name(&a.name).map_err(CliError::bad_input)?;
    for (flag, addr) in [("--addr", Some(&a.addr)), ("--relay", a.relay.as_ref())] {
        if let Some(addr) = addr {
            peers::check_addr(addr).map_err(|why| CliError::bad_input(format!("{flag}: {why}")))?;
        }
    }
    if !(a.deadline > 0.0 && a.deadline.is_finite()) {
        return Err(CliError::bad_input(
            "--deadline must be a positive number of seconds",
        ));
    }
    let registry = a.registry.as_deref().map(Registry::read).transpose()?;
    let mut announced = Vec::new();
    for path in &a.announcements {
        match roster::read_announcement(path, a.epoch) {
            Ok(ann) => announced.push(ann),
            Err(e) => tracing::warn!("skipped {e}"),
        }
    }
    let rules = Rules {
        epoch: a.epoch,
        validator: Peer {
            name: a.name,
            addr: a.addr,
            pubkey: key.public(),
            bandwidth: None,
            uid: None,
            relay: None,
        },
        registry: registry.as_ref(),
        exclude: &a.exclude,
        max_members: a.max_members.min(roster::MAX_MEMBERS - 1),
        relay: a.relay,
        deadline: a.deadline,
        max_weight: a.max_weight,
    };
    let decision = roster::decide(announced, &rules);
    for s in &decision.skipped {
        tracing::warn!("skipped {}: {}", s.name, s.why);
    }
    let r = &decision.roster;
    r.peers(&a.output.display().to_string())?;
    let names: Vec<&str> = r.members.iter().map(|m| m.name.as_str()).collect();
    write_output(Some(&a.output), &Signed::sign(r.clone(), &key).to_json())?;
    println!(
        "epoch {}  {} members  {}",
        r.epoch,
        names.len(),
        names.join(",")
    );
    Ok(())
}

fn show(a: ShowArgs) -> Result<()> {
    let r = roster::read_roster(&a.roster, &a.validator_pubkey, a.epoch)?;
    match &a.peers_toml {
        Some(path) => write_output(Some(path), &r.peers("roster")?.to_toml()),
        None => write_output(None, &(serde_json::to_string_pretty(&r)? + "\n")),
    }
}
