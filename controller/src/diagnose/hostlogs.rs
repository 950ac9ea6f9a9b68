//! nova-compute's own log records of the instance, searched by the agents
//! of the hosts involved: the search request, and its result as the
//! report shows it.

use novamedic_proto::v1;
use novamedic_proto::view::rfc3339_from_unix_ms;
use serde::Serialize;
use time::macros::format_description;
use time::PrimitiveDateTime;

use crate::openstack::types::{InstanceAction, Server};

/// Time searched before the earliest action: nova-compute logs the claim
/// and the image download before the event's own start is recorded.
const BEFORE_MS: i64 = 5 * 60_000;

/// Time searched after the latest action: cleanup, the reschedule and the
/// fault are logged after the event finished.
const AFTER_MS: i64 = 10 * 60_000;

/// Window searched when neither the actions nor the server have a time.
const FALLBACK_MS: i64 = 24 * 3_600_000;

/// The maximum window an agent accepts.
pub const MAX_WINDOW_MS: i64 = 7 * 24 * 3_600_000;

/// Request ids an agent accepts in one search.
pub const MAX_REQUEST_IDS: usize = 32;

/// Records an agent returns for one search at most.
pub const MAX_RECORDS: u32 = 500;

/// Records asked of each host.
pub const RECORDS_PER_HOST: u32 = 200;

/// The search sent to the agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostLogQuery {
    pub instance_uuid: String,
    pub request_ids: Vec<String>,
    pub start_unix_ms: i64,
    pub end_unix_ms: i64,
}

impl HostLogQuery {
    /// Builds the search: the server's UUID, its actions' request ids, and
    /// a window around the actions' times (the server's created and updated times when no
    /// action has one). `now_unix_ms` ends the window when nothing does.
    pub fn for_server(server: &Server, actions: &[InstanceAction], now_unix_ms: i64) -> Self {
        let action_times = actions.iter().flat_map(|action| {
            let own = [action.start_time.as_deref(), action.updated_at.as_deref()];
            let events = action
                .events
                .iter()
                .flat_map(|event| [event.start_time.as_deref(), event.finish_time.as_deref()]);
            own.into_iter().chain(events)
        });
        let mut times: Vec<i64> = action_times.flatten().filter_map(nova_time_ms).collect();
        if times.is_empty() {
            let server_times = [server.created.as_deref(), server.updated.as_deref()];
            times = server_times
                .into_iter()
                .flatten()
                .filter_map(nova_time_ms)
                .collect();
        }
        let (start, end) = match (times.iter().min(), times.iter().max()) {
            (Some(first), Some(last)) => (first - BEFORE_MS, last + AFTER_MS),
            _ => (now_unix_ms - FALLBACK_MS, now_unix_ms),
        };
        let start = start.max(end - MAX_WINDOW_MS + 1);
        let mut request_ids: Vec<String> = Vec::new();
        for id in actions
            .iter()
            .filter_map(|action| action.request_id.as_deref())
        {
            if id.starts_with("req-") && !request_ids.iter().any(|known| known == id) {
                request_ids.push(id.to_string());
            }
        }
        request_ids.truncate(MAX_REQUEST_IDS);
        HostLogQuery {
            instance_uuid: server.id.clone(),
            request_ids,
            start_unix_ms: start,
            end_unix_ms: end,
        }
    }

    pub fn to_wire(&self) -> v1::SearchLogs {
        v1::SearchLogs {
            instance_uuid: self.instance_uuid.clone(),
            request_ids: self.request_ids.clone(),
            start_unix_ms: self.start_unix_ms,
            end_unix_ms: self.end_unix_ms,
            max_records: RECORDS_PER_HOST,
        }
    }
}

/// Parses Nova's timestamps (`2026-11-30T08:57:04.118224`,
/// `2026-11-30T09:02:11Z`), which are UTC, to Unix milliseconds.
pub fn nova_time_ms(text: &str) -> Option<i64> {
    let seconds = text.get(..19)?.replace('T', " ");
    let at = PrimitiveDateTime::parse(
        &seconds,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    Some(at.assume_utc().unix_timestamp() * 1000)
}

/// The result of one host's search of nova-compute's log files.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostLogs {
    /// The node's name in novamedic, which the search went to.
    pub node: String,
    /// The file the agent follows; its rotated copies are searched too.
    pub log_file: String,
    /// Matching records, oldest first, secrets redacted on the node.
    pub records: Vec<HostLogRecord>,
    /// Files read, and the files skipped or damaged with the reason.
    pub files_searched: Vec<String>,
    pub file_notes: Vec<String>,
    /// More records matched than the agent returned.
    pub truncated: bool,
    /// The reason nothing could be searched, such as no log file.
    pub problem: Option<String>,
}

/// One record of nova-compute's log.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HostLogRecord {
    pub file: String,
    pub line: u64,
    /// RFC 3339 UTC, `null` for a record without a timestamp.
    pub time: Option<String>,
    pub level: String,
    pub request_id: Option<String>,
    /// The record with its traceback, redacted, at most 4 KiB.
    pub text: String,
    /// The agent's classification, when a signature matched.
    pub signature_id: Option<String>,
    pub fault_kind: Option<String>,
    pub advice: Option<String>,
}

impl HostLogRecord {
    /// The record's first line.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The last line of a traceback, where Python names the exception;
    /// `None` for a record of one line.
    pub fn last_line(&self) -> Option<&str> {
        let last = self.text.lines().last()?;
        (self.text.lines().nth(1).is_some()).then_some(last)
    }
}

impl HostLogs {
    pub fn from_wire(node: &str, found: &v1::LogSearchResult) -> Self {
        let text = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
        HostLogs {
            node: node.to_string(),
            log_file: found.log_file.clone(),
            records: found
                .records
                .iter()
                .map(|record| HostLogRecord {
                    file: record.file.clone(),
                    line: record.line,
                    time: (record.time_unix_ms != 0)
                        .then(|| rfc3339_from_unix_ms(record.time_unix_ms))
                        .flatten(),
                    level: record.level.clone(),
                    request_id: text(&record.request_id),
                    text: record.text.clone(),
                    signature_id: text(&record.signature_id),
                    fault_kind: text(&record.fault_kind),
                    advice: text(&record.advice),
                })
                .collect(),
            files_searched: found
                .files
                .iter()
                .filter(|file| file.searched)
                .map(|file| file.path.clone())
                .collect(),
            file_notes: found
                .files
                .iter()
                .filter(|file| !file.note.is_empty())
                .map(|file| format!("{}: {}", file.path, file.note))
                .collect(),
            truncated: found.truncated,
            problem: text(&found.problem),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openstack::types::ActionEvent;

    #[test]
    fn window_spans_the_actions_with_margins() {
        let server = Server {
            id: "6f1b8f4e-3c2a-4d5b-9e8f-0a1b2c3d4e5f".into(),
            ..Server::default()
        };
        let actions = vec![InstanceAction {
            request_id: Some("req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01".into()),
            start_time: Some("2026-12-04T10:00:00.000000".into()),
            events: vec![ActionEvent {
                finish_time: Some("2026-12-04T10:02:00Z".into()),
                ..ActionEvent::default()
            }],
            ..InstanceAction::default()
        }];
        let query = HostLogQuery::for_server(&server, &actions, 0);
        let base = nova_time_ms("2026-12-04T10:00:00").unwrap();
        assert_eq!(query.start_unix_ms, base - BEFORE_MS);
        assert_eq!(query.end_unix_ms, base + 120_000 + AFTER_MS);
        assert_eq!(
            query.request_ids,
            vec!["req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01"]
        );
    }

    #[test]
    fn window_without_times_ends_now_and_never_exceeds_a_week() {
        let server = Server::default();
        let query = HostLogQuery::for_server(&server, &[], 100 * MAX_WINDOW_MS);
        assert_eq!(query.end_unix_ms, 100 * MAX_WINDOW_MS);
        assert_eq!(query.end_unix_ms - query.start_unix_ms, FALLBACK_MS);

        let old = InstanceAction {
            start_time: Some("2026-01-01T00:00:00".into()),
            updated_at: Some("2026-12-01T00:00:00".into()),
            ..InstanceAction::default()
        };
        let query = HostLogQuery::for_server(&server, &[old], 0);
        assert!(query.end_unix_ms - query.start_unix_ms < MAX_WINDOW_MS);
    }
}
