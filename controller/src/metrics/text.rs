//! Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` lines,
//! then one sample per line with escaped label values.

use std::fmt::Write;

/// One sample: its labels and value.
pub type Sample = (Vec<(&'static str, String)>, u64);

/// A metrics page being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// Writes a counter family; `name` ends in `_total`.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[Sample]) {
        self.family(name, help, "counter", samples);
    }

    /// Writes a gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[Sample]) {
        self.family(name, help, "gauge", samples);
    }

    /// Writes a histogram family without labels. `cumulative` contains one count
    /// per bound plus the +Inf bucket.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        bounds: &[f64],
        cumulative: &[u64],
        sum: f64,
        count: u64,
    ) {
        self.header(name, help, "histogram");
        for (bound, value) in bounds.iter().zip(cumulative) {
            let _ = writeln!(self.text, "{name}_bucket{{le=\"{bound}\"}} {value}");
        }
        let _ = writeln!(self.text, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(self.text, "{name}_sum {sum}");
        let _ = writeln!(self.text, "{name}_count {count}");
    }

    pub fn finish(self) -> String {
        self.text
    }

    fn family(&mut self, name: &str, help: &str, kind: &str, samples: &[Sample]) {
        self.header(name, help, kind);
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (index, (label, label_value)) in labels.iter().enumerate() {
                    if index > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{label}=\"{}\"", escape(label_value));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.gauge(
            "novamedic_example",
            "An example.",
            &[(vec![("node", "a\"b\\c\nd".to_string())], 7)],
        );
        assert_eq!(
            out.finish(),
            "# HELP novamedic_example An example.\n# TYPE novamedic_example gauge\n\
             novamedic_example{node=\"a\\\"b\\\\c\\nd\"} 7\n"
        );
    }
}
