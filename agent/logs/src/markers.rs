//! Literal pre-filter for routine records.

use aho_corasick::{AhoCorasick, MatchKind};
use memchr::memmem::Finder;

/// A single marker is searched with `memmem`. Two or more use one Aho-Corasick
/// pass (its SIMD searcher tests all of them per block), which took fewer
/// instructions than one `memmem` pass per marker already with the three markers
/// of the shipped catalogue on routine records.
const MAX_MEMMEM_MARKERS: usize = 1;

/// Tells whether any of a set of literal strings occurs in a text.
#[derive(Debug, Clone)]
pub(crate) enum MarkerSet {
    Finders(Vec<Finder<'static>>),
    Automaton(AhoCorasick),
}

impl MarkerSet {
    pub(crate) fn new(markers: &[&str]) -> Result<MarkerSet, String> {
        let mut unique: Vec<&str> = markers.iter().copied().filter(|m| !m.is_empty()).collect();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() <= MAX_MEMMEM_MARKERS {
            let finders = unique
                .iter()
                .map(|m| Finder::new(m.as_bytes()).into_owned())
                .collect();
            return Ok(MarkerSet::Finders(finders));
        }
        // Leftmost-first lets aho-corasick use its SIMD searcher; only whether a
        // marker occurs matters, not which one.
        AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostFirst)
            .build(unique)
            .map(MarkerSet::Automaton)
            .map_err(|e| e.to_string())
    }

    pub(crate) fn is_match(&self, text: &str) -> bool {
        match self {
            MarkerSet::Finders(finders) => {
                finders.iter().any(|f| f.find(text.as_bytes()).is_some())
            }
            MarkerSet::Automaton(automaton) => automaton.is_match(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_set_finds_markers_in_both_modes() {
        let few = MarkerSet::new(&["Reconnected to AMQP", "Too many heartbeats"]).expect("build");
        assert!(few.is_match("x Too many heartbeats missed"));
        assert!(!few.is_match("Took 1.0 seconds"));
        let names: Vec<String> = (0..20).map(|i| format!("marker-{i}")).collect();
        let many: Vec<&str> = names.iter().map(String::as_str).collect();
        let many = MarkerSet::new(&many).expect("build");
        assert!(matches!(many, MarkerSet::Automaton(_)));
        assert!(many.is_match("a marker-17 b"));
        assert!(!many.is_match("a marker b"));
    }
}
