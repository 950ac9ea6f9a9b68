//! `novamedic diagnose --all`: every instance in ERROR, grouped by cause.

use std::fmt::Write;

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::gather::diagnose_found;
use super::{Cause, Diagnosis, FleetSource};
use crate::cli::escape_control;
use crate::openstack::{nova, ApiError, Client};

/// Servers diagnosed at once: enough to hide latency, few enough not to
/// load the APIs of a cloud that is already in trouble.
const CONCURRENT_DIAGNOSES: usize = 4;

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub schema_version: u32,
    /// The `--host` filter, if any.
    pub host: Option<String>,
    /// Instances in ERROR that matched.
    pub total: usize,
    /// Largest group first.
    pub groups: Vec<Group>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Group {
    pub cause: Cause,
    pub count: usize,
    pub servers: Vec<ServerLine>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServerLine {
    pub id: String,
    pub name: Option<String>,
    /// Hosts involved: the server's host and the hosts of compute events.
    pub hosts: Vec<String>,
    pub fault: Option<String>,
    /// The first line of evidence for the cause.
    pub evidence: Option<String>,
    /// Parts that could not be checked.
    pub missing: usize,
}

/// Lists every ERROR instance the credentials see and diagnoses each.
/// With `host`, keeps those that involve it, including failed builds,
/// whose own host Nova clears: Nova's `host` filter would miss those.
/// `progress` shows a bar on stderr.
pub async fn diagnose_all(
    client: &Client,
    fleet: &impl FleetSource,
    host: Option<&str>,
    progress: bool,
) -> Result<Summary, ApiError> {
    let servers = nova::error_servers(client).await?;
    let bar = if progress {
        ProgressBar::with_draw_target(Some(servers.len() as u64), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} instances {msg}") {
        bar.set_style(style);
    }
    let diagnoses: Vec<Diagnosis> = futures::stream::iter(servers)
        .map(|server| {
            let bar = &bar;
            async move {
                let diagnosis = diagnose_found(client, fleet, server).await;
                bar.inc(1);
                diagnosis
            }
        })
        .buffer_unordered(CONCURRENT_DIAGNOSES)
        .collect()
        .await;
    bar.finish_and_clear();
    Ok(summarize(diagnoses, host))
}

/// Groups diagnoses by cause, largest group first, servers by name.
pub fn summarize(diagnoses: Vec<Diagnosis>, host: Option<&str>) -> Summary {
    let mut groups: Vec<Group> = Vec::new();
    let mut total = 0;
    for diagnosis in diagnoses {
        let hosts: Vec<String> = diagnosis
            .hosts
            .iter()
            .map(|check| check.host.clone())
            .collect();
        if let Some(wanted) = host {
            let short = |name: &str| name.split('.').next().unwrap_or(name).to_string();
            if !hosts
                .iter()
                .any(|name| name == wanted || short(name) == wanted)
            {
                continue;
            }
        }
        total += 1;
        let line = ServerLine {
            id: diagnosis.server.id.clone(),
            name: diagnosis.server.name.clone(),
            hosts,
            fault: diagnosis
                .server
                .fault
                .as_ref()
                .and_then(|fault| fault.message.clone()),
            evidence: diagnosis.verdict.evidence.first().cloned(),
            missing: diagnosis.missing.len(),
        };
        let cause = diagnosis.verdict.cause;
        match groups.iter_mut().find(|group| group.cause == cause) {
            Some(group) => {
                group.count += 1;
                group.servers.push(line);
            }
            None => groups.push(Group {
                cause,
                count: 1,
                servers: vec![line],
            }),
        }
    }
    for group in &mut groups {
        group
            .servers
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    }
    groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.cause.cmp(&b.cause)));
    Summary {
        schema_version: super::SCHEMA_VERSION,
        host: host.map(str::to_string),
        total,
        groups,
    }
}

/// Formats the terminal report: one block per cause with its servers.
pub fn render_text(summary: &Summary) -> String {
    let mut out = String::new();
    let scope = summary
        .host
        .as_ref()
        .map(|host| format!(" involving {host}"))
        .unwrap_or_default();
    if summary.total == 0 {
        let _ = writeln!(out, "No instances in ERROR{}.", escape_control(&scope));
        return out;
    }
    let _ = writeln!(
        out,
        "{} instances in ERROR{}",
        summary.total,
        escape_control(&scope)
    );
    for group in &summary.groups {
        let _ = writeln!(out, "\n{} ({})", group.cause.name(), group.count);
        for server in &group.servers {
            let text = format!(
                "  {} {} on {}: {}",
                server.id,
                server.name.as_deref().unwrap_or("-"),
                if server.hosts.is_empty() {
                    "-".to_string()
                } else {
                    server.hosts.join(", ")
                },
                server
                    .evidence
                    .as_deref()
                    .or(server.fault.as_deref())
                    .unwrap_or("-")
            );
            let _ = writeln!(out, "{}", escape_control(&text));
        }
    }
    out
}

/// Formats the Markdown report: a count table, then the servers of each
/// cause.
pub fn render_markdown(summary: &Summary) -> String {
    let mut out = String::from("# Instances in ERROR\n\n| cause | count |\n|---|---|\n");
    for group in &summary.groups {
        let _ = writeln!(out, "| {} | {} |", group.cause.name(), group.count);
    }
    for group in &summary.groups {
        let _ = writeln!(out, "\n## {}\n", group.cause.name());
        for server in &group.servers {
            let text = format!(
                "`{}` {} on {}: {}",
                server.id,
                server.name.as_deref().unwrap_or("-"),
                server.hosts.join(", "),
                server
                    .evidence
                    .as_deref()
                    .or(server.fault.as_deref())
                    .unwrap_or("-")
            );
            let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
            let _ = writeln!(out, "- {}", flat.replace('<', "&lt;").replace('>', "&gt;"));
        }
    }
    out
}
