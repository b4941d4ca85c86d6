//! The dashboard's charts, drawn by plotters into SVG strings. Labels come
//! from attackers: plotters escapes them as XML text; they are also cut
//! short and stripped of control characters here. No font file is read
//! (plotters without its `ttf` feature estimates text extents).

use plotters::prelude::*;

const BAR: RGBColor = RGBColor(0x3b, 0x6e, 0xa8);
const SECOND: RGBColor = RGBColor(0xd9, 0x7b, 0x29);
const LABEL_CHARS: usize = 38;

/// A label fit for a chart: no control characters, at most
/// [`LABEL_CHARS`] characters.
pub fn label(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .take(LABEL_CHARS)
        .collect();
    if s.chars().count() > LABEL_CHARS {
        out.push('…');
    }
    out
}

/// A horizontal bar chart of (label, value), largest first.
pub fn bars(title: &str, items: &[(String, u64)]) -> Result<String, String> {
    let mut svg = String::new();
    let rows = items.len().max(1);
    let height = 60 + 22 * rows as u32;
    {
        let root = SVGBackend::with_string(&mut svg, (560, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let max = items.iter().map(|i| i.1).max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(230)
            .build_cartesian_2d(0u64..max + max / 10 + 1, 0..rows)
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = items.iter().map(|(l, _)| label(l)).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows + 1)
            .y_label_formatter(&|y| {
                // Row 0 at the top.
                rows.checked_sub(y + 1)
                    .and_then(|i| names.get(i))
                    .cloned()
                    .unwrap_or_default()
            })
            .x_labels(5)
            .max_light_lines(1)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(items.iter().enumerate().map(|(i, (_, v))| {
                let y = rows - 1 - i;
                let mut r = Rectangle::new([(0, y), (*v, y + 1)], BAR.filled());
                r.set_margin(3, 3, 0, 0);
                r
            }))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Sessions and messages per time bucket: `points` are (bucket start as
/// a label, sessions, messages), in time order.
pub fn timeline(title: &str, points: &[(String, u64, u64)]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1140, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let n = points.len().max(1);
        let max = points
            .iter()
            .map(|p| p.1.max(p.2))
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0..n, 0u64..max + max / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(8.min(n))
            .x_label_formatter(&|x| points.get(*x).map(|p| p.0.clone()).unwrap_or_default())
            .max_light_lines(1)
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                AreaSeries::new(
                    points.iter().enumerate().map(|(i, p)| (i, p.1)),
                    0,
                    BAR.mix(0.25),
                )
                .border_style(BAR.stroke_width(2)),
            )
            .map_err(|e| e.to_string())?
            .label("sessions")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BAR.stroke_width(2)));
        if n <= 60 {
            // Few buckets: dots, so that a single one still shows.
            chart
                .draw_series(
                    points
                        .iter()
                        .enumerate()
                        .map(|(i, p)| Circle::new((i, p.1), 3, BAR.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(
                LineSeries::new(
                    points.iter().enumerate().map(|(i, p)| (i, p.2)),
                    SECOND.stroke_width(2),
                )
                .point_size(2),
            )
            .map_err(|e| e.to_string())?
            .label("messages")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], SECOND.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_cut() {
        let svg = bars("t", &[("<script>&\"".into(), 3), ("\u{0}x".into(), 1)]).unwrap();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;&amp;"));
        assert!(!svg.contains('\u{0}'));
        assert_eq!(label(&"a".repeat(100)).chars().count(), LABEL_CHARS + 1);
    }
}
