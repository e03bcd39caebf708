use std::path::PathBuf;

use crate::exit::Result;
use dtrain::keys::Key;

#[derive(clap::Args, Debug)]
#[command(after_long_help = "Examples:
  dtrain keygen -o miner.key
  dtrain keygen --public miner.key      # the line for the peers file")]
pub struct KeygenArgs {
    /// Key file to create (mode 0600; never overwritten); prints its public key
    #[arg(short, long, required_unless_present = "public")]
    output: Option<PathBuf>,
    /// Print the public key of this existing key file instead (for the peers file)
    #[arg(long, value_name = "KEY", conflicts_with = "output")]
    public: Option<PathBuf>,
}

pub fn run(args: KeygenArgs) -> Result<()> {
    let k = match (&args.public, &args.output) {
        (Some(p), _) => Key::load(p)?,
        (None, Some(out)) => {
            let k = Key::generate();
            k.save(out)?;
            k
        }
        (None, None) => unreachable!("clap requires one of them"),
    };
    println!("{}", k.public().to_hex());
    Ok(())
}
