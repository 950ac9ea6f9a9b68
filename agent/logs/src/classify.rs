//! Matching records (and the server's fault text) against the catalogue.
//!
//! Pre-filter: records at WARNING, ERROR, CRITICAL, TRACE or of unknown level are
//! searched with every pattern. DEBUG, INFO and AUDIT records, which make up almost
//! all of a log, are first scanned for the catalogue's literal `markers` (SIMD substring
//! search), and searched only when a marker occurs. That keeps routine
//! records cheap while INFO signatures such as `Reconnected to AMQP server` are seen.

use crate::catalogue::Catalogue;
use crate::header::Level;
use crate::record::Record;
use serde::{Deserialize, Serialize};

/// Result of classifying one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Classification {
    /// Index of the winning fault signature (lowest priority, then catalogue order).
    pub fault: Option<usize>,
    /// Indexes of the signatures whose recovery patterns the record matches.
    pub recovers: Vec<usize>,
}

impl Classification {
    pub fn is_empty(&self) -> bool {
        self.fault.is_none() && self.recovers.is_empty()
    }
}

/// The `fault` of a server as `openstack server show` returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFault {
    pub code: Option<u16>,
    pub message: String,
    #[serde(default)]
    pub details: Option<String>,
    /// UTC time the fault was recorded (`YYYY-MM-DDThh:mm:ssZ`).
    #[serde(default)]
    pub created: Option<String>,
}

impl Catalogue {
    /// Classifies one record.
    pub fn classify(&self, record: &Record) -> Classification {
        if !record.level.is_problem() && !self.markers.is_match(record.text_from_message()) {
            return Classification::default();
        }
        self.classify_text(record.text(), record.level)
    }

    /// Classifies a text whose first line has level `level`.
    pub fn classify_text(&self, text: &str, level: Level) -> Classification {
        if !level.is_problem() && !self.markers.is_match(text) {
            return Classification::default();
        }
        let fault = self
            .fault_set
            .matches(text)
            .map(|pattern| self.fault_owner[pattern])
            .filter(|&sig| self.accepts_level(sig, level))
            .min_by_key(|&sig| (self.signatures[sig].priority, sig));
        let mut recovers: Vec<usize> = if self.recovery_set.is_empty() {
            Vec::new()
        } else {
            self.recovery_set
                .matches(text)
                .map(|p| self.recovery_owner[p])
                .collect()
        };
        recovers.dedup();
        Classification { fault, recovers }
    }

    /// Orphan lines (`TRACE` without its record, text without any prefix) have no
    /// level of their own, so every signature accepts them.
    fn accepts_level(&self, signature: usize, level: Level) -> bool {
        matches!(level, Level::Trace | Level::Unknown)
            || self.signatures[signature].levels.contains(&level)
    }

    /// Classifies the server's fault (message and details), ignoring levels.
    pub fn classify_server_fault(&self, fault: &ServerFault) -> Option<usize> {
        let text = match &fault.details {
            Some(details) => format!("{}\n{}", fault.message, details),
            None => fault.message.clone(),
        };
        self.fault_set
            .matches(&text)
            .map(|pattern| self.fault_owner[pattern])
            .min_by_key(|&sig| (self.signatures[sig].priority, sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::FaultKind;

    fn kind_of(text: &str, level: Level) -> Option<FaultKind> {
        let (catalogue, _) = Catalogue::shipped();
        let found = catalogue.classify_text(text, level).fault;
        found.map(|i| catalogue.signature(i).fault_kind)
    }

    #[test]
    fn classify_prefers_specific_cause_over_spawn_symptom() {
        let text = "Instance failed to spawn\nTRACE ImageNotFound: Image x could not be found.";
        assert_eq!(kind_of(text, Level::Error), Some(FaultKind::Image));
        let text = "Instance failed to spawn: Unauthorized: The request you have made requires authentication. (HTTP 401)";
        assert_eq!(kind_of(text, Level::Error), Some(FaultKind::Authentication));
    }

    #[test]
    fn classify_skips_info_records_without_markers() {
        assert_eq!(kind_of("Instance failed to spawn", Level::Info), None);
        let (catalogue, _) = Catalogue::shipped();
        let c = catalogue.classify_text(
            "Reconnected to AMQP server on 192.0.2.5:5672 via [amqp] client with port 4242.",
            Level::Info,
        );
        assert_eq!(c.fault, None);
        assert!(
            !c.recovers.is_empty(),
            "reconnect line must be seen as a recovery"
        );
    }

    #[test]
    fn classify_placement_connect_failure_only_with_both_parts() {
        let text = "Error updating resources for node compute-01.: keystoneauth1.exceptions.connection.ConnectFailure: Unable to establish connection to http://192.0.2.10:8778/resource_providers";
        assert_eq!(kind_of(text, Level::Error), Some(FaultKind::Placement));
        let other =
            "Error updating resources for node compute-01.: libvirt.libvirtError: internal error";
        assert_ne!(kind_of(other, Level::Error), Some(FaultKind::Placement));
    }

    #[test]
    fn classify_server_fault_message_and_details() {
        let (catalogue, _) = Catalogue::shipped();
        let fault = ServerFault {
            code: Some(500),
            message: "NoValidHost".into(),
            details: Some("No valid host was found. ".into()),
            created: None,
        };
        let sig = catalogue
            .classify_server_fault(&fault)
            .expect("signature for NoValidHost");
        assert_eq!(catalogue.signature(sig).fault_kind, FaultKind::Scheduling);
    }

    #[test]
    fn configuration_advice_names_the_option() {
        let (catalogue, _) = Catalogue::shipped();
        let text = "Unhandled error: oslo_config.cfg.ConfigFileValueError: Value for option ram from LocationInfo is not valid";
        let sig = catalogue
            .classify_text(text, Level::Critical)
            .fault
            .expect("match");
        let advice = catalogue.signature(sig).render_advice(text);
        assert!(advice.contains("`ram`"), "advice: {advice}");
        assert!(!advice.contains('{'), "unfilled placeholder: {advice}");
    }

    #[test]
    fn configuration_advice_names_the_file() {
        let (catalogue, _) = Catalogue::shipped();
        // As oslo.config 9.0 (Debian 12) writes it.
        let text = "Unhandled error: oslo_config.cfg.ConfigFileValueError: Value for option report_interval from LocationInfo(location=<Locations.user: (4, True)>, detail='/etc/nova/nova-compute.conf') is not valid: invalid literal for int() with base 10: 'often'";
        let sig = catalogue
            .classify_text(text, Level::Critical)
            .fault
            .expect("match");
        let advice = catalogue.signature(sig).render_advice(text);
        assert!(advice.contains("`report_interval`"), "advice: {advice}");
        assert!(
            advice.contains("`/etc/nova/nova-compute.conf`"),
            "advice: {advice}"
        );
    }
}
