//! Detection of the unit that runs nova-compute on this node.
//!
//! The decision (`choose_unit`) is a pure function of the LoadStates that
//! `detect_unit` reads over D-Bus, so the rules are tested without systemd.

use super::dbus::SystemdManager;
use super::SystemdError;

/// Unit names nova-compute is packaged under, in the order they are tried:
/// Ubuntu and Debian, RDO and RHOSP, devstack, kolla-ansible with systemd.
pub const KNOWN_UNITS: [&str; 4] = [
    "nova-compute.service",
    "openstack-nova-compute.service",
    "devstack@n-cpu.service",
    "kolla-nova_compute-container.service",
];

/// The outcome of a detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detection {
    Found(String),
    /// No usable unit; `reason` is for the operator.
    NotInstalled {
        reason: String,
    },
}

/// Returns the units to look at: the configured one only, or the known names.
pub fn candidates(configured: Option<&str>) -> Vec<String> {
    match configured {
        Some(unit) => vec![unit.to_string()],
        None => KNOWN_UNITS.iter().map(|unit| unit.to_string()).collect(),
    }
}

/// Chooses among `candidates` with their LoadStates, in candidate order.
///
/// A "loaded" unit wins. A unit whose file exists but does not load
/// ("bad-setting", "error") comes next, so the operator sees its load error
/// instead of "not installed". "not-found" and "masked" units are never
/// chosen: masking is how an operator takes nova-compute out of service.
pub fn choose_unit(configured: Option<&str>, load_states: &[(String, String)]) -> Detection {
    let usable = |wanted: fn(&str) -> bool| {
        load_states
            .iter()
            .find(|(_, state)| wanted(state))
            .map(|(unit, _)| unit.clone())
    };
    let loaded = usable(|state| state == "loaded");
    let broken = usable(|state| !matches!(state, "loaded" | "not-found" | "masked"));
    if let Some(unit) = loaded.or(broken) {
        return Detection::Found(unit);
    }

    let reason = match configured {
        Some(unit) => {
            let state = load_states
                .first()
                .map(|(_, state)| state.as_str())
                .unwrap_or("not-found");
            format!("the configured nova-compute unit {unit} is not usable (LoadState={state})")
        }
        None => {
            let masked: Vec<&str> = load_states
                .iter()
                .filter(|(_, state)| state == "masked")
                .map(|(unit, _)| unit.as_str())
                .collect();
            let mut reason = format!(
                "nova-compute is not installed (none of {} found)",
                KNOWN_UNITS.join(", ")
            );
            if !masked.is_empty() {
                reason = format!("nova-compute is masked ({})", masked.join(", "));
            }
            reason
        }
    };
    Detection::NotInstalled { reason }
}

/// Finds nova-compute's unit: `configured`, else the first known name
/// systemd can load. Bus errors are returned; a missing unit is not an
/// error but `Detection::NotInstalled`.
pub async fn detect_unit(
    manager: &SystemdManager,
    configured: Option<&str>,
) -> Result<Detection, SystemdError> {
    let mut load_states = Vec::new();
    for unit in candidates(configured) {
        let state = match manager.load_state(&unit).await {
            Ok(state) => state,
            Err(SystemdError::UnitNotFound(_)) => "not-found".to_string(),
            Err(err) => return Err(err),
        };
        let found = state == "loaded";
        load_states.push((unit, state));
        if found {
            break;
        }
    }
    Ok(choose_unit(configured, &load_states))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn states(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(unit, state)| (unit.to_string(), state.to_string()))
            .collect()
    }

    #[test]
    fn candidates_are_configured_or_known() {
        assert_eq!(
            candidates(Some("nova.service")),
            vec!["nova.service".to_string()]
        );
        assert_eq!(candidates(None).len(), KNOWN_UNITS.len());
        assert_eq!(candidates(None)[0], "nova-compute.service");
    }

    #[test]
    fn first_loaded_unit_wins() {
        let found = choose_unit(
            None,
            &states(&[
                ("nova-compute.service", "not-found"),
                ("openstack-nova-compute.service", "loaded"),
                ("devstack@n-cpu.service", "loaded"),
            ]),
        );
        assert_eq!(
            found,
            Detection::Found("openstack-nova-compute.service".to_string())
        );
    }

    #[test]
    fn loaded_beats_earlier_broken_unit() {
        let found = choose_unit(
            None,
            &states(&[
                ("nova-compute.service", "bad-setting"),
                ("openstack-nova-compute.service", "loaded"),
            ]),
        );
        assert_eq!(
            found,
            Detection::Found("openstack-nova-compute.service".to_string())
        );
    }

    #[test]
    fn broken_unit_is_chosen_over_none() {
        let found = choose_unit(
            None,
            &states(&[
                ("nova-compute.service", "bad-setting"),
                ("openstack-nova-compute.service", "not-found"),
            ]),
        );
        assert_eq!(found, Detection::Found("nova-compute.service".to_string()));
    }

    #[test]
    fn none_found_lists_all_names() {
        let all_missing: Vec<(&str, &str)> = KNOWN_UNITS
            .iter()
            .map(|unit| (*unit, "not-found"))
            .collect();
        let Detection::NotInstalled { reason } = choose_unit(None, &states(&all_missing)) else {
            panic!("expected NotInstalled");
        };
        assert!(
            reason.starts_with("nova-compute is not installed (none of "),
            "{reason}"
        );
        for unit in KNOWN_UNITS {
            assert!(reason.contains(unit), "{reason} lacks {unit}");
        }
    }

    #[test]
    fn masked_unit_is_not_chosen() {
        let detection = choose_unit(
            None,
            &states(&[
                ("nova-compute.service", "masked"),
                ("openstack-nova-compute.service", "not-found"),
            ]),
        );
        let Detection::NotInstalled { reason } = detection else {
            panic!("expected NotInstalled, got {detection:?}");
        };
        assert_eq!(reason, "nova-compute is masked (nova-compute.service)");
    }

    #[test]
    fn configured_unit_is_not_replaced_by_known_one() {
        let detection = choose_unit(
            Some("my-nova.service"),
            &states(&[("my-nova.service", "not-found")]),
        );
        let Detection::NotInstalled { reason } = detection else {
            panic!("expected NotInstalled, got {detection:?}");
        };
        assert!(reason.contains("my-nova.service"), "{reason}");
        assert!(reason.contains("LoadState=not-found"), "{reason}");
    }

    /// The packaged polkit rule allows the restart on exactly the units the
    /// agent detects, so a detected unit is never one polkit denies.
    #[test]
    fn polkit_rule_lists_known_units() {
        let rule = include_str!("../../../packaging/polkit/50-novamedic-agent.rules");
        let list_start = rule.find("var units = [").expect("rule has a units list");
        let list = &rule[list_start..];
        let list = &list[..list.find("];").expect("units list ends")];
        let units: Vec<&str> = list.split('"').skip(1).step_by(2).collect();
        assert_eq!(units, KNOWN_UNITS);
    }
}
