//! `dtrain ledger plot`: the training curve, drawn from the signed ledger
//! alone, so anyone holding a (verified) ledger sees the same picture.
//!
//! Three panels: loss and eval loss against epoch, the same against tokens
//! trained, and contributors per epoch. PNG through plotters' bitmap backend
//! (text with the bundled DejaVu Sans, so no system fonts are needed), SVG
//! when the output ends in `.svg`. Drawn in memory, written like every output
//! (`fsio::write_atomic`).

use std::path::Path;
use std::sync::Once;

use image::ImageEncoder;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::ledger::Entry;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the ledger has no entries to plot")]
    Empty,
    #[error("{0}: the plot must be a .png or .svg file")]
    Format(String),
    #[error("drawing {0}: {1}")]
    Draw(String, DrawError),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

const FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| unreachable!("the bundled font parses"));
    });
}

/// One curve: (x, y) points and its name.
struct Curve {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// What plotters said when a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DrawError(String);

/// Draws the ledger's curves into `out` (PNG or SVG by extension), `width`×`height` pixels.
pub fn plot(entries: &[Entry], out: &Path, width: u32, height: u32) -> Result<(), Error> {
    if entries.is_empty() {
        return Err(Error::Empty);
    }
    register_font();
    let name = out.display().to_string();
    // drawn in memory, then written through fsio (temporary, rename) like every output
    let bytes = match out.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            draw(
                BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area(),
                entries,
            )
            .map_err(|why| Error::Draw(name.clone(), why))?;
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&rgb, width, height, image::ColorType::Rgb8)
                .map_err(|e| Error::Draw(name.clone(), DrawError(e.to_string())))?;
            png
        }
        Some("svg") => {
            let mut svg = String::new();
            draw(
                SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area(),
                entries,
            )
            .map_err(|why| Error::Draw(name.clone(), why))?;
            svg.into_bytes()
        }
        _ => return Err(Error::Format(name)),
    };
    crate::fsio::write_atomic(out, &bytes).map_err(|e| Error::Io(name, e))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    entries: &[Entry],
) -> Result<(), DrawError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError(e.to_string());
    root.fill(&WHITE).map_err(err)?;
    let (w, h) = root.dim_in_pixel();
    let (top, bottom) = root.split_vertically(h * 64 / 100);
    let (by_epoch, by_tokens) = top.split_horizontally(w / 2);
    let losses = |x: fn(&Entry) -> f64| {
        let curve = |name, color, y: fn(&Entry) -> Option<f64>| Curve {
            name,
            color,
            points: entries.iter().filter_map(|e| Some((x(e), y(e)?))).collect(),
        };
        vec![
            curve("miners' loss", BLUE, |e| e.loss),
            curve("validator's eval loss", RED, |e| e.eval_loss),
        ]
    };
    let epoch_axis = Axis {
        label: "epoch",
        decimals: 0,
    };
    let tokens_axis = Axis {
        label: "tokens (millions)",
        decimals: 3,
    };
    let by_epoch_curves = losses(|e| e.epoch as f64);
    panel(&by_epoch, "loss by epoch", &epoch_axis, &by_epoch_curves)?;
    let by_tokens_curves = losses(|e| e.tokens as f64 / 1e6);
    panel(
        &by_tokens,
        "loss by tokens",
        &tokens_axis,
        &by_tokens_curves,
    )?;
    let contributors = Curve {
        name: "contributors",
        color: GREEN,
        points: entries
            .iter()
            .map(|e| (e.epoch as f64, e.contributors.len() as f64))
            .collect(),
    };
    panel(
        &bottom,
        "contributors per epoch",
        &epoch_axis,
        &[contributors],
    )?;
    root.present().map_err(err)
}

/// An x axis: its name and the decimals of its tick labels.
struct Axis {
    label: &'static str,
    decimals: usize,
}

/// One chart: the curves' points on shared axes fitted to them (a single
/// curve is named by the title; several get a legend).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    x: &Axis,
    curves: &[Curve],
) -> Result<(), DrawError> {
    let all: Vec<(f64, f64)> = curves.iter().flat_map(|c| c.points.clone()).collect();
    let (x0, x1) = bounds(all.iter().map(|p| p.0));
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    let x_ticks = |v: &f64| format!("{v:.*}", x.decimals);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| DrawError(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x.label)
        .x_label_formatter(&x_ticks)
        .x_labels(8)
        .y_labels(6)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|e| DrawError(e.to_string()))?;
    for c in curves.iter().filter(|c| !c.points.is_empty()) {
        let color = c.color;
        chart
            .draw_series(LineSeries::new(c.points.clone(), color.stroke_width(2)))
            .map_err(|e| DrawError(e.to_string()))?
            .label(c.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart
            .draw_series(c.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| DrawError(e.to_string()))?;
    }
    if curves.len() < 2 {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|e| DrawError(e.to_string()))
}

/// A range that holds every value with a margin (and is never empty).
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 {
        span * 0.08
    } else {
        hi.abs().max(1.0) * 0.1
    };
    (lo - pad, hi + pad)
}
