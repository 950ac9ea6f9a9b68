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
    /// `None` for a record of one line. oslo.log ends a traceback with a
    /// line whose message is empty, so lines without a message are skipped.
    pub fn last_line(&self) -> Option<&str> {
        let (_, rest) = self.text.split_once('\n')?;
        rest.lines()
            .rev()
            .find(|line| !oslo_message(line).trim().is_empty())
    }
}

/// Returns the message of an oslo.log line: what follows the level, the
/// logger, the context block (`[req-… user project]`, `[-]`) and the
/// instance tag (`[instance: UUID]`). Traceback lines have no context
/// block. A line without a level is returned whole.
pub fn oslo_message(line: &str) -> &str {
    let after_level = [
        " DEBUG ",
        " INFO ",
        " WARNING ",
        " ERROR ",
        " CRITICAL ",
        " TRACE ",
    ]
    .iter()
    .filter_map(|level| line.find(level).map(|at| at + level.len()))
    .min();
    let Some(after_level) = after_level else {
        return line;
    };
    let Some((_logger, rest)) = line[after_level..].split_once(' ') else {
        return line;
    };
    let message = match rest.split_once("] ") {
        Some((context, message)) if context == "[-" || is_request_context(context) => message,
        _ => rest,
    };
    message
        .strip_prefix("[instance: ")
        .and_then(|tagged| tagged.split_once("] "))
        .map_or(message, |(_, untagged)| untagged)
}

/// True for the start of a context block with a request id,
/// `[req-…` or `[None req-…` (global id, then local id).
fn is_request_context(text: &str) -> bool {
    text.strip_prefix('[')
        .is_some_and(|ids| ids.split(' ').take(2).any(|id| id.starts_with("req-")))
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

    #[test]
    fn oslo_message_strips_line_prefix() {
        let line = "2026-12-05 04:00:01.120 4242 ERROR nova.compute.manager \
                    [None req-0fe319d7-15bc-4819-aed7-af4a18c1d720 admin admin - - default default] \
                    [instance: c88f1556-b299-4254-9642-cab36648dfaa] Build of instance \
                    c88f1556-b299-4254-9642-cab36648dfaa aborted: FakeBuildAbortDriver";
        assert_eq!(
            oslo_message(line),
            "Build of instance c88f1556-b299-4254-9642-cab36648dfaa aborted: FakeBuildAbortDriver"
        );
    }

    #[test]
    fn oslo_message_without_request_or_instance() {
        let line =
            "2026-12-05 04:00:01.120 4242 WARNING nova.compute.manager [-] No compute node record";
        assert_eq!(oslo_message(line), "No compute node record");
        let untagged =
            "2026-12-05 04:00:01.120 4242 ERROR nova.compute.manager [req-1 a b - - -] Failed";
        assert_eq!(oslo_message(untagged), "Failed");
    }

    #[test]
    fn oslo_message_of_traceback_lines() {
        let tagged = "2026-12-05 04:00:01.120 4242 ERROR nova.compute.manager \
                      [instance: c88f1556-b299-4254-9642-cab36648dfaa] \
                      OSError: [Errno 28] No space left on device";
        assert_eq!(
            oslo_message(tagged),
            "OSError: [Errno 28] No space left on device"
        );
        let untagged =
            "2026-12-05 04:00:01.120 4242 ERROR nova.compute.manager [Errno 28] No space left";
        assert_eq!(oslo_message(untagged), "[Errno 28] No space left");
    }

    #[test]
    fn oslo_message_keeps_lines_without_level() {
        for line in [
            "OSError: [Errno 28] No space left on device",
            "Traceback (most recent call last):",
        ] {
            assert_eq!(oslo_message(line), line);
        }
    }

    #[test]
    fn last_line_skips_empty_traceback_end() {
        let prefix = "2026-12-05 06:38:49.176 784 ERROR nova.compute.manager \
                      [instance: 388d3e8c-0345-4ad4-aa53-a9aff20239b8]";
        let record = HostLogRecord {
            text: format!(
                "2026-12-05 06:38:49.176 784 ERROR nova.compute.manager [None req-1 a b - - - -] \
                 [instance: 388d3e8c-0345-4ad4-aa53-a9aff20239b8] Unexpected build failure\n\
                 {prefix} Traceback (most recent call last):\n\
                 {prefix} EmptyCatalog: The service catalog is empty.\n\
                 {prefix} \n"
            ),
            ..HostLogRecord::default()
        };
        assert_eq!(
            record.last_line().map(oslo_message),
            Some("EmptyCatalog: The service catalog is empty.")
        );

        let single = HostLogRecord {
            text: "2026-12-05 06:38:49.176 784 ERROR nova.compute.manager [-] Failed".into(),
            ..HostLogRecord::default()
        };
        assert_eq!(single.last_line(), None);
    }
}
