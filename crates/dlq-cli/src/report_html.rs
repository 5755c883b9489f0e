//! The HTML report of `dlq analyze --format html`: one self-contained page
//! (inline CSS, charts as inline SVG drawn by plotters, no script, nothing
//! fetched), to attach to an incident or open from a file.
//!
//! Everything that comes from records (templates, example errors, ids, keys)
//! is HTML-escaped, and the page carries a Content-Security-Policy that
//! forbids scripts and remote content, so a hostile payload quoted in an
//! error message cannot act when the report is opened. Chart labels are
//! reduced to plain characters before plotters draws them.

use chrono::{DateTime, Duration, Utc};
use dlq_core::analyze::Group;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::io::Write;

/// Groups drawn in the size chart; the table lists them all.
const SIZE_CHART_GROUPS: usize = 15;
/// Groups drawn in the timeline chart (the largest ones).
const TIMELINE_GROUPS: usize = 8;

/// Writes the report for `groups` (largest first) of `dlqs`.
pub fn write(
    out: &mut impl Write,
    dlqs: &[String],
    groups: &[Group],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let total: u64 = groups.iter().map(|g| g.count).sum();
    let mut page = String::new();
    page.push_str(concat!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; ",
        "style-src 'unsafe-inline'; img-src data:\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        "<title>dlq analyze: failure groups</title>\n<style>\n",
        "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1300px}\n",
        "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}\n",
        "th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\n",
        "td.n{text-align:right}\ncode{background:#f4f4f4;padding:0 .2rem;overflow-wrap:anywhere}\n",
        ".permanent{color:#a40000}.transient{color:#1a7f37}.unknown{color:#7a5c00}\n",
        "figure{margin:1rem 0}figcaption{font-weight:600;margin-bottom:.3rem}\n",
        "section.group{border-top:1px solid #ddd;margin-top:1.5rem}\n",
        "</style>\n</head>\n<body>\n"
    ));
    writeln!(page, "<h1>Failure groups</h1>")?;
    writeln!(
        page,
        "<p>{total} records in {} groups; DLQs: {}. Generated {}.</p>",
        groups.len(),
        esc(&dlqs.join(", ")),
        now.format("%Y-%m-%d %H:%M:%S UTC")
    )?;
    if !groups.is_empty() {
        writeln!(
            page,
            "<figure id=\"sizes\"><figcaption>Group sizes (the {} largest)</figcaption>\n{}</figure>",
            groups.len().min(SIZE_CHART_GROUPS),
            sizes_chart(groups)?
        )?;
        writeln!(
            page,
            "<figure id=\"timeline\"><figcaption>Failures per hour, by group (the {} largest)</figcaption>\n{}</figure>",
            groups.len().min(TIMELINE_GROUPS),
            timeline_chart(groups)?
        )?;
    }
    summary_table(&mut page, groups)?;
    for (i, g) in groups.iter().enumerate() {
        group_section(&mut page, i + 1, g)?;
    }
    page.push_str("</body>\n</html>\n");
    out.write_all(page.as_bytes())?;
    Ok(())
}

fn verdict(g: &Group) -> String {
    format!("{:?}", g.verdict).to_lowercase()
}

fn summary_table(page: &mut String, groups: &[Group]) -> anyhow::Result<()> {
    page.push_str(
        "<table id=\"groups\">\n<tr><th>#</th><th>fingerprint</th><th>dlq</th><th>stage</th>\
         <th>error class</th><th>count</th><th>verdict</th><th>last seen</th><th>template</th></tr>\n",
    );
    for (i, g) in groups.iter().enumerate() {
        let v = verdict(g);
        writeln!(
            page,
            "<tr><td class=\"n\">{}</td><td><a href=\"#g{}\"><code>{}</code></a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"{v}\">{v}</td><td>{}</td>\
             <td><code>{}</code></td></tr>",
            i + 1,
            esc(&g.fingerprint),
            esc(&g.fingerprint),
            esc(&g.dlq),
            esc(&g.stage),
            esc(&g.error_class),
            g.count,
            g.last_seen.format("%Y-%m-%d %H:%M:%S"),
            esc(&g.typed_template)
        )?;
    }
    page.push_str("</table>\n");
    Ok(())
}

fn group_section(page: &mut String, n: usize, g: &Group) -> anyhow::Result<()> {
    let v = verdict(g);
    writeln!(
        page,
        "<section class=\"group\" id=\"g{}\">\n<h2>#{n} <code>{}</code> {} ({})</h2>\n<ul>",
        esc(&g.fingerprint),
        esc(&g.fingerprint),
        esc(&g.error_class),
        g.count
    )?;
    writeln!(
        page,
        "<li>template: <code>{}</code></li>",
        esc(&g.typed_template)
    )?;
    writeln!(
        page,
        "<li>example: <code>{}</code></li>",
        esc(&g.example_error)
    )?;
    writeln!(
        page,
        "<li>source: {} / {}; partitions: {}</li>",
        esc(g.source_topic.as_deref().unwrap_or("-")),
        esc(&g.stage),
        esc(&g
            .partitions
            .iter()
            .map(|(p, c)| format!("{p} ({c})"))
            .collect::<Vec<_>>()
            .join(", "))
    )?;
    writeln!(
        page,
        "<li>seen: {} … {}</li>",
        g.first_seen.format("%Y-%m-%d %H:%M:%S"),
        g.last_seen.format("%Y-%m-%d %H:%M:%S")
    )?;
    writeln!(
        page,
        "<li>verdict: <strong class=\"{v}\">{v}</strong>: {}</li>",
        esc(&g.verdict_reason)
    )?;
    for f in &g.fields {
        writeln!(page, "<li>field: {}</li>", esc(&f.detail))?;
    }
    writeln!(
        page,
        "<li>keys: {} distinct{}, {} without a key; samples: {}</li>",
        g.keys.distinct,
        if g.keys.capped { " or more" } else { "" },
        g.keys.without_key,
        esc(&g.keys.samples.join(", "))
    )?;
    writeln!(
        page,
        "<li>sample ids: <code>{}</code></li>",
        esc(&g.sample_ids.join(" "))
    )?;
    writeln!(
        page,
        "<li>replay: <code>dlq replay --dlq {} --filter '{}'</code></li>\n</ul>\n</section>",
        esc(&g.dlq),
        esc(&g.replay_filter)
    )?;
    Ok(())
}

/// HTML text: `& < > " '` escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A chart label reduced to characters that need no escaping in SVG.
fn label(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '#' | ':'))
        .take(60)
        .collect()
}

/// The label of the `i`-th group in a chart. The DLQ is named in full, as
/// `--dlq` takes it: the report cannot know which prefix the store that
/// named it uses (a Kafka store's is configurable), so it strips none.
fn chart_label(i: usize, g: &Group) -> String {
    group_label(i, &g.error_class, &g.dlq)
}

fn group_label(i: usize, error_class: &str, dlq: &str) -> String {
    label(&format!("#{} {error_class} {dlq}", i + 1))
}

fn draw_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// Bars: the size of each of the largest groups.
fn sizes_chart(groups: &[Group]) -> anyhow::Result<String> {
    let shown = &groups[..groups.len().min(SIZE_CHART_GROUPS)];
    let max = shown.iter().map(|g| g.count).max().unwrap_or(1).max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 60 + 28 * shown.len() as u32))
            .into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(330)
            .build_cartesian_2d(
                0f64..(max as f64 * 1.1),
                -0.5f64..(shown.len() as f64 - 0.5),
            )
            .map_err(draw_error)?;
        let names: Vec<String> = shown
            .iter()
            .enumerate()
            .map(|(i, g)| chart_label(i, g))
            .collect();
        let n = shown.len();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|y| {
                // Rows are drawn top to bottom, largest first.
                let row = y.round();
                if (row - y).abs() > 0.01 || row < 0.0 || row as usize >= n {
                    return String::new();
                }
                names[n - 1 - row as usize].clone()
            })
            .x_desc("records")
            .draw()
            .map_err(draw_error)?;
        chart
            .draw_series(shown.iter().enumerate().map(|(i, g)| {
                let y = (n - 1 - i) as f64;
                Rectangle::new(
                    [(0.0, y - 0.35), (g.count as f64, y + 0.35)],
                    Palette99::pick(i).filled(),
                )
            }))
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

/// Lines: records per hour of each of the largest groups.
fn timeline_chart(groups: &[Group]) -> anyhow::Result<String> {
    let shown = &groups[..groups.len().min(TIMELINE_GROUPS)];
    let hours = shown.iter().flat_map(|g| g.timeline.iter().map(|b| b.hour));
    let (Some(first), Some(last)) = (hours.clone().min(), hours.max()) else {
        return Ok(String::new());
    };
    // One hour of room on each side, so a single bucket is not on an edge.
    let (from, to) = (first - Duration::hours(1), last + Duration::hours(1));
    let max = shown
        .iter()
        .flat_map(|g| g.timeline.iter().map(|b| b.count))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(from..to, 0u64..(max + max / 10 + 1))
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_labels(8)
            .x_label_formatter(&|t| t.format("%m-%d %H:%M").to_string())
            .y_desc("records per hour")
            .draw()
            .map_err(draw_error)?;
        for (i, g) in shown.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(
                    LineSeries::new(g.timeline.iter().map(|b| (b.hour, b.count)), color)
                        .point_size(4),
                )
                .map_err(draw_error)?
                .label(chart_label(i, g))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        assert_eq!(label("#1 <b>x</b> a.b"), "#1 bxb a.b");
    }

    #[test]
    fn chart_labels_name_the_dlq_whatever_its_prefix() {
        assert_eq!(
            group_label(0, "validation.wrong_type", "dlq.rss.events"),
            "#1 validation.wrong_type dlq.rss.events"
        );
        assert_eq!(
            group_label(1, "validation.wrong_type", "errors-rss.events"),
            "#2 validation.wrong_type errors-rss.events"
        );
    }
}
