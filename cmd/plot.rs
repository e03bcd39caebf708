//! `dtrain plot`: named series of (x, y) points from JSON lines, drawn on one
//! chart (what the benchmarks draw: held-out loss against bytes sent).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use crate::exit::{bad_input, Result};
use dtrain::plot::{Labels, Series};

#[derive(clap::Args, Debug)]
#[command(
    after_long_help = "Each input line is a JSON object {\"series\": NAME, \"x\": X, \"y\": Y};
a series' points are joined in the order they come.

Example:
  dtrain plot --input points.jsonl --log-x --x-label 'bytes sent' --y-label 'eval loss' -o loss.png"
)]
pub struct PlotArgs {
    /// The points, as JSON lines ('-': stdin)
    #[arg(long, default_value = "-")]
    input: PathBuf,
    /// The picture: a .png or .svg file
    #[arg(short, long)]
    output: PathBuf,
    /// The chart's title
    #[arg(long, default_value = "")]
    title: String,
    /// The x axis' label
    #[arg(long, default_value = "x")]
    x_label: String,
    /// The y axis' label
    #[arg(long, default_value = "y")]
    y_label: String,
    /// A logarithmic x axis (every x must be above 0)
    #[arg(long)]
    log_x: bool,
    /// Width in pixels
    #[arg(long, default_value_t = 900)]
    width: u32,
    /// Height in pixels
    #[arg(long, default_value_t = 560)]
    height: u32,
}

/// One input line.
#[derive(serde::Deserialize)]
struct Point {
    series: String,
    x: f64,
    y: f64,
}

/// At most this much input is read (a plot of points, not a data set).
const MAX_INPUT: u64 = 64 << 20;

pub fn run(a: PlotArgs) -> Result<()> {
    if !(64..=8192).contains(&a.width) || !(64..=8192).contains(&a.height) {
        return Err(bad_input!(
            "--width and --height must be between 64 and 8192 pixels"
        ));
    }
    let mut text = String::new();
    if a.input.as_os_str() == "-" {
        std::io::stdin().take(MAX_INPUT).read_to_string(&mut text)?;
    } else {
        std::fs::File::open(&a.input)?
            .take(MAX_INPUT)
            .read_to_string(&mut text)?;
    }
    let series = parse(&text)?;
    let labels = Labels {
        title: a.title,
        x: a.x_label,
        y: a.y_label,
        log_x: a.log_x,
    };
    dtrain::plot::plot_series(&series, &labels, &a.output, (a.width, a.height))?;
    let points: usize = series.iter().map(|s| s.points.len()).sum();
    println!(
        "{}  {} series  {points} points",
        a.output.display(),
        series.len()
    );
    Ok(())
}

/// The series in the order they first appear; a bad line is an error naming it.
fn parse(text: &str) -> Result<Vec<Series>> {
    let mut order: Vec<String> = Vec::new();
    let mut points: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let p: Point =
            serde_json::from_str(line).map_err(|e| bad_input!("--input line {}: {e}", i + 1))?;
        if !p.x.is_finite() || !p.y.is_finite() {
            return Err(bad_input!("--input line {}: x and y must be finite", i + 1));
        }
        if !points.contains_key(&p.series) {
            order.push(p.series.clone());
        }
        points.entry(p.series).or_default().push((p.x, p.y));
    }
    Ok(order
        .into_iter()
        .map(|name| Series {
            points: points.remove(&name).unwrap_or_default(),
            name,
        })
        .collect())
}
