//! Human output shared by every command: one table renderer and one duration format.
//!
//! Tables go to stderr with the rest of the progress output; `--json` puts the same data on
//! stdout (the command's report type derives `Serialize`). Cells are plain text: callers mask
//! secrets before they become cells.

use std::fmt::Write as _;
use std::time::Duration;

/// A plain-text table: a header row and left-aligned columns, two spaces apart; the last
/// column is not padded (it holds free text such as a detail or a cause).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles (shown in upper case, as the EB CLI does).
    pub fn new<I, S>(header: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are kept.
    pub fn row<I, S>(&mut self, cells: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
        self
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The rendered table, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let columns = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.header.len()])
            .max()
            .unwrap_or(0);
        let mut widths = vec![0usize; columns];
        let header: Vec<String> = self.header.iter().map(|h| h.to_uppercase()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = row.get(i).map_or("", String::as_str);
                if i + 1 == columns {
                    line.push_str(cell);
                } else {
                    let pad = w.saturating_sub(cell.chars().count());
                    let _ = write!(line, "{cell}{}  ", " ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A short human duration: `850 ms`, `1.2 s`, `2m 5s`, `3h 4m`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else {
        format!("{}h {}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_the_last_is_free_text() {
        let mut t = Table::new(["environment", "status", "detail"]);
        t.row(["staging", "Ready", "Green"]);
        t.row(["production-eu", "Updating", "deploy in flight"]);
        assert_eq!(
            t.render(),
            "ENVIRONMENT    STATUS    DETAIL\n\
             staging        Ready     Green\n\
             production-eu  Updating  deploy in flight\n"
        );
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn short_rows_are_padded_and_width_counts_characters() {
        let mut t = Table::new(["a", "b"]);
        t.row(["→→→"]);
        t.row(["x", "y"]);
        assert_eq!(t.render(), "A    B\n→→→\nx    y\n");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(human_duration(Duration::from_millis(1250)), "1.2 s");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m 5s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 240)), "3h 4m");
    }
}
