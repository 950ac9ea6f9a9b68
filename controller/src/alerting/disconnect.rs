//! Detection of many agents losing their stream at once. That points at the
//! controller's network, a firewall or a deploy rather than at the nodes,
//! so it makes one fleet-wide alert instead of one per node. No I/O; times
//! are passed in.

use std::collections::{BTreeMap, BTreeSet};

use super::config::MassDisconnectRule;
use super::{Alert, Severity, AGENTS_DISCONNECTED};

/// Nodes named in the alert's description; the rest are counted.
const NODES_SHOWN: usize = 20;

/// Disconnects seen recently and the episode they started, if any.
///
/// NOTE: this lives in memory only. A controller restarted during an
/// episode starts with no episode, and nodes that never reconnect after
/// its start raise no mass-disconnect alert.
#[derive(Debug)]
pub struct MassDisconnect {
    rule: MassDisconnectRule,
    /// Nodes whose stream closed and has not reopened.
    down: BTreeSet<String>,
    /// When each node in `down` lost its stream, Unix time in milliseconds.
    since_unix_ms: BTreeMap<String, i64>,
    episode: Option<Episode>,
}

/// A mass disconnect in progress.
#[derive(Debug, Clone)]
struct Episode {
    started_unix_ms: i64,
    /// Every node that lost its stream in the episode.
    nodes: BTreeSet<String>,
    known_nodes: usize,
}

impl MassDisconnect {
    pub fn new(rule: MassDisconnectRule) -> Self {
        MassDisconnect {
            rule,
            down: BTreeSet::new(),
            since_unix_ms: BTreeMap::new(),
            episode: None,
        }
    }

    /// Returns how many nodes must lose their stream within the window, out
    /// of `known_nodes`: the rule's share, rounded up, but at least its
    /// minimum.
    pub fn threshold(&self, known_nodes: usize) -> usize {
        let by_share = (known_nodes * self.rule.percent as usize).div_ceil(100);
        by_share.max(self.rule.min_nodes as usize)
    }

    /// Records that `node` lost its stream, and returns the alert that
    /// should be active now.
    pub fn disconnected(
        &mut self,
        node: &str,
        now_unix_ms: i64,
        known_nodes: usize,
    ) -> Option<Alert> {
        self.down.insert(node.to_string());
        self.since_unix_ms.insert(node.to_string(), now_unix_ms);
        if let Some(episode) = &mut self.episode {
            episode.nodes.insert(node.to_string());
            episode.known_nodes = known_nodes;
            return self.alert();
        }

        let window_ms = i64::try_from(self.rule.window.as_millis()).unwrap_or(i64::MAX);
        let recent: BTreeSet<String> = self
            .since_unix_ms
            .iter()
            .filter(|(_, &at)| now_unix_ms - at <= window_ms)
            .map(|(node, _)| node.clone())
            .collect();
        if recent.len() >= self.threshold(known_nodes) {
            let started_unix_ms = recent
                .iter()
                .filter_map(|node| self.since_unix_ms.get(node))
                .copied()
                .min()
                .unwrap_or(now_unix_ms);
            self.episode = Some(Episode {
                started_unix_ms,
                nodes: recent,
                known_nodes,
            });
        }
        self.alert()
    }

    /// Records that `node` has a stream again, and returns the alert that
    /// should be active now. The episode ends once more than half of its
    /// nodes are back.
    pub fn connected(&mut self, node: &str) -> Option<Alert> {
        self.down.remove(node);
        self.since_unix_ms.remove(node);
        if let Some(episode) = &self.episode {
            let back = episode
                .nodes
                .iter()
                .filter(|node| !self.down.contains(*node))
                .count();
            if back * 2 > episode.nodes.len() {
                self.episode = None;
            }
        }
        self.alert()
    }

    /// Returns the alert for the current episode, None when there is none.
    pub fn alert(&self) -> Option<Alert> {
        let episode = self.episode.as_ref()?;
        let count = episode.nodes.len();
        let shown: Vec<&str> = episode
            .nodes
            .iter()
            .take(NODES_SHOWN)
            .map(String::as_str)
            .collect();
        let more = count.saturating_sub(NODES_SHOWN);
        let mut names = shown.join(", ");
        if more > 0 {
            names.push_str(&format!(" and {more} more"));
        }
        Some(Alert {
            name: AGENTS_DISCONNECTED,
            node: None,
            severity: Severity::Critical,
            summary: format!(
                "{count} of {} novamedic agents lost their stream to the controller within {} s",
                episode.known_nodes,
                self.rule.window.as_secs()
            ),
            description: format!(
                "Agents disconnected: {names}. So many at once points at the controller's \
                 network, a firewall or a deploy, not at the nodes, so no per-node alert is sent. \
                 Nodes without an agent stream are not judged by the self-healing policy. The \
                 alert resolves when more than half of these agents are connected again."
            ),
            starts_at_unix_ms: episode.started_unix_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn detector() -> MassDisconnect {
        MassDisconnect::new(MassDisconnectRule {
            percent: 20,
            min_nodes: 3,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn threshold_is_share_or_minimum() {
        let detector = detector();
        assert_eq!(detector.threshold(5), 3);
        assert_eq!(detector.threshold(20), 4);
        assert_eq!(detector.threshold(101), 21);
    }

    #[test]
    fn below_threshold_is_no_alert() {
        let mut detector = detector();
        assert!(detector.disconnected("cn-1", 1_000, 10).is_none());
        assert!(detector.disconnected("cn-2", 2_000, 10).is_none());
    }

    #[test]
    fn disconnects_spread_beyond_window_are_no_alert() {
        let mut detector = detector();
        assert!(detector.disconnected("cn-1", 0, 10).is_none());
        assert!(detector.disconnected("cn-2", 61_000, 10).is_none());
        assert!(detector.disconnected("cn-3", 122_000, 10).is_none());
    }

    #[test]
    fn reconnected_node_does_not_count() {
        let mut detector = detector();
        detector.disconnected("cn-1", 0, 10);
        detector.connected("cn-1");
        detector.disconnected("cn-2", 1_000, 10);
        assert!(detector.disconnected("cn-3", 2_000, 10).is_none());
    }

    #[test]
    fn episode_fires_grows_and_resolves_on_majority_back() {
        let mut detector = detector();
        detector.disconnected("cn-1", 1_000, 10);
        detector.disconnected("cn-2", 2_000, 10);
        let alert = detector
            .disconnected("cn-3", 3_000, 10)
            .expect("three of ten within the window");
        assert_eq!(alert.name, AGENTS_DISCONNECTED);
        assert_eq!(alert.node, None);
        assert_eq!(alert.starts_at_unix_ms, 1_000);
        assert!(alert.summary.starts_with("3 of 10"), "{}", alert.summary);
        assert!(
            alert.description.contains("cn-1, cn-2, cn-3"),
            "{}",
            alert.description
        );

        // A node dropping later joins the episode, whatever the window.
        let grown = detector
            .disconnected("cn-4", 500_000, 10)
            .expect("still active");
        assert!(grown.summary.starts_with("4 of 10"), "{}", grown.summary);
        assert_eq!(grown.starts_at_unix_ms, 1_000);

        assert!(detector.connected("cn-1").is_some(), "1 of 4 back");
        assert!(
            detector.connected("cn-2").is_some(),
            "2 of 4 back is not most"
        );
        assert!(detector.connected("cn-3").is_none(), "3 of 4 back resolves");
    }

    #[test]
    fn long_lists_are_cut() {
        let mut detector = detector();
        let mut alert = None;
        for index in 0..30 {
            alert = detector.disconnected(&format!("cn-{index:02}"), 1_000, 40);
        }
        let alert = alert.expect("30 of 40");
        assert!(
            alert.description.contains("and 10 more"),
            "{}",
            alert.description
        );
        assert!(
            !alert.description.contains("cn-29"),
            "{}",
            alert.description
        );
    }
}
