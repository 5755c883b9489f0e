//! Writing results: aligned tables for people, JSON for programs.

use crate::cli::Format;
use serde::Serialize;
use std::io::{self, Write};

/// Prints rows as aligned columns under a header.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: Vec<&str>| -> io::Result<()> {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = *w));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, header.to_vec())?;
    for row in rows {
        line(out, row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// Prints one JSON document (`json`) or one line per item (`ndjson`).
pub fn json<T: Serialize>(out: &mut impl Write, format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Ndjson => serde_json::to_writer(&mut *out, value)?,
        _ => serde_json::to_writer_pretty(&mut *out, value)?,
    }
    writeln!(out)?;
    Ok(())
}

/// Cuts `text` to `max` characters for a table cell, on one line.
pub fn cell(text: &str, max: usize) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// A duration in seconds as people read it: `42s`, `5m12s`, `3h04m`, `2d03h`.
pub fn age(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["dlq", "pending"],
            &[
                vec!["dlq.rss.events".into(), "3".into()],
                vec!["x".into(), "12345".into()],
            ],
        )
        .expect("table");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(
            text,
            "dlq             pending\ndlq.rss.events  3\nx               12345\n"
        );
    }

    #[test]
    fn ages_read_well() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(312), "5m12s");
        assert_eq!(age(3 * 3600 + 240), "3h04m");
        assert_eq!(age(2 * 86_400 + 3 * 3600), "2d03h");
        assert_eq!(age(-3), "0s");
    }

    #[test]
    fn cells_are_one_line_and_cut() {
        assert_eq!(cell("a\nb", 10), "a b");
        assert_eq!(cell("abcdefghij", 5), "abcd…");
    }
}
