//! A plain aligned text table, with optional note lines under a row.

/// Rows of cells padded to the widest cell of each column.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<(Vec<String>, Vec<String>)>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row and the note lines printed, indented, beneath it.
    pub fn push(&mut self, cells: Vec<String>, notes: Vec<String>) {
        self.rows.push((cells, notes));
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for (cells, _) in &self.rows {
            for (index, cell) in cells.iter().enumerate() {
                if let Some(width) = widths.get_mut(index) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }

        let mut out = String::new();
        push_line(&mut out, &self.header, &widths);
        for (cells, notes) in &self.rows {
            push_line(&mut out, cells, &widths);
            for note in notes {
                out.push_str("  └ ");
                out.push_str(note);
                out.push('\n');
            }
        }
        out
    }
}

fn push_line(out: &mut String, cells: &[String], widths: &[usize]) {
    let last = cells.len().saturating_sub(1);
    for (index, cell) in cells.iter().enumerate() {
        out.push_str(cell);
        if index < last {
            let width = widths.get(index).copied().unwrap_or(0);
            let padding = width.saturating_sub(cell.chars().count()) + 2;
            out.push_str(&" ".repeat(padding));
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_notes_indent() {
        let mut table = Table::new(&["NODE", "HEALTH"]);
        table.push(vec!["compute-001".into(), "healthy".into()], Vec::new());
        table.push(
            vec!["c2".into(), "failed".into()],
            vec!["unit failed".into()],
        );
        let expected = "NODE         HEALTH\n\
                        compute-001  healthy\n\
                        c2           failed\n  └ unit failed\n";
        assert_eq!(table.render(), expected);
    }
}
