//! `dtrain ledger plot`: the training curve, drawn from the signed ledger
//! alone, so anyone holding a (verified) ledger sees the same picture. And
//! `dtrain plot`: named series of (x, y) points on one chart (benchmarks'
//! loss against bytes sent, on a log x axis).
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
    #[error("no points to plot")]
    NoPoints,
    #[error("a log x axis needs every x above 0")]
    LogOfZero,
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
    render(
        out,
        (width, height),
        |root| draw(root, entries),
        |root| draw(root, entries),
    )
}

/// Draws a chart into memory with the backend `out`'s extension names and
/// writes it (temporary, rename) like every output.
fn render(
    out: &Path,
    (width, height): (u32, u32),
    png: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> Result<(), DrawError>,
    svg: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<(), DrawError>,
) -> Result<(), Error> {
    register_font();
    let name = out.display().to_string();
    let bytes = match out.extension().and_then(|e| e.to_str()) {
        Some("png") => {
            let mut rgb = vec![0u8; width as usize * height as usize * 3];
            png(BitMapBackend::with_buffer(&mut rgb, (width, height)).into_drawing_area())
                .map_err(|why| Error::Draw(name.clone(), why))?;
            let mut png = Vec::new();
            image::codecs::png::PngEncoder::new(&mut png)
                .write_image(&rgb, width, height, image::ColorType::Rgb8)
                .map_err(|e| Error::Draw(name.clone(), DrawError(e.to_string())))?;
            png
        }
        Some("svg") => {
            let mut svg_text = String::new();
            svg(SVGBackend::with_string(&mut svg_text, (width, height)).into_drawing_area())
                .map_err(|why| Error::Draw(name.clone(), why))?;
            svg_text.into_bytes()
        }
        _ => return Err(Error::Format(name)),
    };
    crate::fsio::write_atomic(out, &bytes).map_err(|e| Error::Io(name, e))
}

/// One named series of a [`plot_series`] chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What a [`plot_series`] chart says about itself.
#[derive(Clone, Debug, Default)]
pub struct Labels {
    pub title: String,
    pub x: String,
    pub y: String,
    /// A logarithmic x axis.
    pub log_x: bool,
}

/// Draws `series` on one chart (lines through their points in order, a
/// legend) into `out` (PNG or SVG by extension).
pub fn plot_series(
    series: &[Series],
    labels: &Labels,
    out: &Path,
    size: (u32, u32),
) -> Result<(), Error> {
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    if all.is_empty() {
        return Err(Error::NoPoints);
    }
    if labels.log_x && all.iter().any(|p| p.0 <= 0.0) {
        return Err(Error::LogOfZero);
    }
    render(
        out,
        size,
        |root| series_chart(root, series, labels),
        |root| series_chart(root, series, labels),
    )
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn series_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    series: &[Series],
    labels: &Labels,
) -> Result<(), DrawError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError(e.to_string());
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.clone()).collect();
    let (y0, y1) = bounds(all.iter().map(|p| p.1));
    let (x0, x1) = if labels.log_x {
        let (lo, hi) = bounds(all.iter().map(|p| p.0.log10()));
        (10f64.powf(lo), 10f64.powf(hi))
    } else {
        bounds(all.iter().map(|p| p.0))
    };
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&labels.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(56);
    let style = |s: &Series, i: usize| (s.name.clone(), PALETTE[i % PALETTE.len()]);
    macro_rules! draw_on {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(|e| DrawError(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc(labels.x.as_str())
                .y_desc(labels.y.as_str())
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| DrawError(e.to_string()))?;
            for (i, s) in series.iter().enumerate() {
                let (name, color) = style(s, i);
                chart
                    .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))
                    .map_err(|e| DrawError(e.to_string()))?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| DrawError(e.to_string()))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| DrawError(e.to_string()))?;
        }};
    }
    if labels.log_x {
        draw_on!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1));
    } else {
        draw_on!(builder.build_cartesian_2d(x0..x1, y0..y1));
    }
    root.present().map_err(err)
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
