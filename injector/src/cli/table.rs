//! Plain aligned tables for the terminal.

/// Columns padded to their widest cell, two spaces apart.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            s.push_str(cell);
            if i < last {
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Prints a `{name: object}` listing (GET /zones, GET /partitions): the
/// JSON as is with `--json`, else a table with a row per entry, or `empty`.
pub fn print_map(
    all: &serde_json::Value,
    json: bool,
    header: &[&str],
    empty: &str,
    row: impl Fn(&str, &serde_json::Value) -> Vec<String>,
) {
    if json {
        println!("{all}");
        return;
    }
    let rows: Vec<Vec<String>> = all
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, v)| row(name, v))
        .collect();
    if rows.is_empty() {
        println!("{empty}");
    } else {
        print!("{}", render(header, &rows));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align() {
        let t = super::render(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }
}
