//! The weekly report's chart: a PNG bar chart of daily sales drawn with plotters, with an
//! embedded font (DejaVu Sans) so it renders the same on a bare container image.
//! Invariant: pure rendering in memory; no files, no system fonts.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::sync::OnceLock;

/// Chart size in pixels.
pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 450;

fn font_ready() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "the embedded font does not load".to_owned())
    })
    .clone()
}

/// The top of the value axis: room above the tallest bar, and never under 5, so the axis
/// of a quiet or empty week still counts in whole units (0, 1, 2 …), not 0, 0, 0, 1, 1.
fn y_top(max: f64) -> f64 {
    (max * 1.15).max(5.0)
}

/// Draws `values` (one bar per `labels` entry, in major units of `currency`) under `title`.
pub fn bars(
    title: &str,
    labels: &[String],
    values: &[f64],
    currency: &str,
) -> Result<Vec<u8>, String> {
    font_ready()?;
    let err = |e: &dyn std::fmt::Display| format!("chart: {e}");
    let n = values.len().min(labels.len());
    let top = y_top(values.iter().copied().fold(0.0, f64::max));
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d((0..n as i32 - 1).into_segmented(), 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .y_max_light_lines(0)
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    labels.get(*i as usize).cloned().unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .y_desc(currency)
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(|e| err(&e))?;
        let colour = RGBColor(38, 110, 180);
        chart
            .draw_series(values.iter().take(n).enumerate().map(|(i, v)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as i32), 0.0),
                        (SegmentValue::Exact(i as i32 + 1), *v),
                    ],
                    colour.filled(),
                );
                bar.set_margin(0, 0, 12, 12);
                bar
            }))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    encode_png(&rgb)
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_with_the_data() {
        let labels: Vec<String> = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
            .map(str::to_owned)
            .to_vec();
        let png = bars(
            "Sales",
            &labels,
            &[10.0, 0.0, 30.0, 5.0, 0.0, 80.0, 12.5],
            "USD",
        )
        .unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
        let bar = |x: u32, y: u32| {
            let i = ((y * WIDTH + x) * 3) as usize;
            buf[i..i + 3] == [38, 110, 180]
        };
        // Bars stand on the x axis: find them along a row just above it.
        let base = (0..HEIGHT)
            .rev()
            .find(|y| (0..WIDTH).any(|x| bar(x, *y)))
            .unwrap();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for x in 0..WIDTH {
            match (bar(x, base), runs.last_mut()) {
                (true, Some(r)) if r.1 + 1 == x => r.1 = x,
                (true, _) => runs.push((x, x)),
                _ => {}
            }
        }
        assert_eq!(runs.len(), 5, "one bar per day with sales: {runs:?}");
        let height =
            |(a, b): (u32, u32)| (0..=base).filter(|y| bar((a + b) / 2, *y)).count() as f64;
        let h: Vec<f64> = runs.iter().map(|r| height(*r)).collect();
        for (i, v) in [10.0, 30.0, 5.0, 80.0, 12.5].iter().enumerate() {
            let expected = h[3] * v / 80.0;
            assert!(
                (h[i] - expected).abs() <= 2.0,
                "bar {i}: {} px, expected {expected}",
                h[i]
            );
        }
        assert!(
            h[3] > 250.0,
            "the tallest bar fills most of the plot: {}",
            h[3]
        );
    }

    /// The value axis labels plotters draws for a chart whose tallest bar is `max`.
    fn y_labels(max: f64) -> Vec<String> {
        use plotters::coord::ranged1d::Ranged;
        let axis: plotters::coord::types::RangedCoordf64 = (0f64..y_top(max)).into();
        axis.key_points(10usize)
            .into_iter()
            .map(|v| format!("{v:.0}"))
            .collect()
    }

    #[test]
    fn the_value_axis_counts_in_distinct_labels_even_for_an_empty_week() {
        for max in [0.0, 0.3, 2.0, 4.9, 17.5, 1234.0, 9_999_999.0] {
            let labels = y_labels(max);
            assert!(labels.len() >= 3, "{max}: {labels:?}");
            let mut distinct = labels.clone();
            distinct.dedup();
            assert_eq!(distinct, labels, "{max}: no label twice");
            assert_eq!(labels[0], "0", "{max}: {labels:?}");
        }
        // An empty week renders.
        let days: Vec<String> = (1..=7).map(|d| format!("Day {d}")).collect();
        assert!(bars("Sales", &days, &[0.0; 7], "USD").is_ok());
    }
}
