//! A plain aligned text table, with optional note lines under a row.

use std::borrow::Cow;
use std::fmt::Write;

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

    /// Adds a row and the note lines printed, indented, beneath it. Control
    /// characters in cells and notes are shown escaped, see [`escape_control`].
    pub fn push(&mut self, cells: Vec<String>, notes: Vec<String>) {
        let escape_all = |texts: Vec<String>| -> Vec<String> {
            texts
                .into_iter()
                .map(|text| escape_control(&text).into_owned())
                .collect()
        };
        self.rows.push((escape_all(cells), escape_all(notes)));
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

/// Returns `text` with control characters (C0, DEL and C1) written as Rust
/// escapes such as `\n` and `\x1b`, so text that came from agents or other
/// operators cannot move the cursor, recolor or rewrite the terminal, or forge
/// extra lines.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(escaped, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(escaped, "\\u{{{:x}}}", c as u32);
            }
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
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

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_control("compute-01"), "compute-01");
        assert_eq!(
            escape_control("a\nb\x1b[31mc\td\u{7f}\u{9b}é"),
            "a\\nb\\x1b[31mc\\td\\x7f\\x9bé"
        );
        let mut table = Table::new(&["NODE", "DETAIL"]);
        table.push(
            vec!["c1".into(), "ok\n3  c2  forged".into()],
            vec!["\x1b]0;title\x07".into()],
        );
        let rendered = table.render();
        assert_eq!(rendered.lines().count(), 3, "{rendered}");
        assert!(rendered.contains("ok\\n3  c2  forged"), "{rendered}");
        assert!(rendered.contains("\\x1b]0;title\\x07"), "{rendered}");
        assert!(!rendered.contains('\x1b'));
    }
}
