//! `novamedic logs`: searches nova-compute's log files on one node through
//! the controller (`OperatorService.SearchNodeLogs`) and prints the records.

use std::time::Duration;

use clap::Args;
use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_proto::view::rfc3339_from_unix_ms;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tonic::transport::Channel;

use super::client::{call_failure, connect, print_json, write_stdout, Outcome, READ_TIMEOUT};
use super::table::{escape_control, Table};
use super::{duration, exit, Failure, OutputFormat, Target};
use crate::controller::MAX_SEARCH_WAIT;
use crate::diagnose::hostlogs::{MAX_RECORDS, MAX_REQUEST_IDS, MAX_WINDOW_MS};
use crate::diagnose::{HostLogRecord, HostLogs};

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("match").required(true).multiple(true).args(["instance", "request_ids"])
))]
pub struct LogsArgs {
    /// Node name, as `novamedic nodes` lists it.
    #[arg(value_parser = super::parse_node)]
    pub node: String,

    /// Records that mention this instance UUID.
    #[arg(long, value_name = "UUID", value_parser = parse_instance)]
    pub instance: Option<String>,

    /// Records of this request id (req-UUID), as Nova's instance actions
    /// show it; repeat for several, at most 32.
    #[arg(long = "request-id", value_name = "ID", value_parser = parse_request_id)]
    pub request_ids: Vec<String>,

    /// Start of the window: a duration before now, as seconds (90) or a
    /// number with s, m, h or d (30m, 2h, 1d), or an RFC 3339 time such as
    /// 2026-12-04T10:00:00Z. The window is at most 7 days long.
    #[arg(long, value_name = "WHEN", default_value = "1d", value_parser = parse_when)]
    pub since: When,

    /// End of the window, in the format of --since, or `now`.
    #[arg(long, value_name = "WHEN", default_value = "now", value_parser = parse_when)]
    pub until: When,

    /// Records to return, 1 to 500. When more match, faults and records at
    /// WARNING or above are kept first.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_RECORDS as i64))]
    pub limit: u32,

    /// Time the agent may search, at most 120s: seconds (90) or a number
    /// with s or m (30s, 2m).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_wait)]
    pub wait: Duration,
}

/// A point in time given on the command line, resolved against the clock
/// when the command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Now,
    /// This long before now.
    Ago(Duration),
    /// Unix time in milliseconds.
    At(i64),
}

impl When {
    fn unix_ms(self, now_unix_ms: i64) -> i64 {
        match self {
            When::Now => now_unix_ms,
            When::Ago(duration) => {
                now_unix_ms.saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
            }
            When::At(unix_ms) => unix_ms,
        }
    }
}

fn parse_when(text: &str) -> Result<When, String> {
    let text = text.trim();
    if text == "now" {
        return Ok(When::Now);
    }
    if text.starts_with(|c: char| c.is_ascii_digit()) && text.contains('-') {
        let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
            format!("{text:?} is not an RFC 3339 time such as 2026-12-04T10:00:00Z: {err}")
        })?;
        let unix_ms = at.unix_timestamp_nanos() / 1_000_000;
        return i64::try_from(unix_ms)
            .map(When::At)
            .map_err(|_| format!("{text:?} is out of range"));
    }
    duration::parse(text).map(When::Ago).map_err(|_| {
        format!(
            "{text:?} is neither a duration before now ({}) nor an RFC 3339 time such as \
             2026-12-04T10:00:00Z",
            duration::FORMAT_HELP
        )
    })
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    duration::parse_at_most(text, MAX_SEARCH_WAIT, "log search wait")
}

fn parse_instance(text: &str) -> Result<String, String> {
    let uuid = uuid::Uuid::try_parse(text.trim()).map_err(|_| {
        format!("{text:?} is not an instance UUID such as 0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01")
    })?;
    Ok(uuid.hyphenated().to_string())
}

fn parse_request_id(text: &str) -> Result<String, String> {
    let text = text.trim();
    text.strip_prefix("req-")
        .and_then(|rest| uuid::Uuid::try_parse(rest).ok())
        .map(|uuid| format!("req-{}", uuid.hyphenated()))
        .ok_or_else(|| {
            format!(
                "{text:?} is not a request id of the form \
                 req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01"
            )
        })
}

/// The `-o json` document: the agent's records and the search that found them.
#[derive(Debug, Serialize)]
struct LogsView {
    #[serde(flatten)]
    logs: HostLogs,
    search: SearchView,
}

#[derive(Debug, Serialize)]
struct SearchView {
    instance_uuid: Option<String>,
    request_ids: Vec<String>,
    /// The window, RFC 3339 in UTC.
    since: Option<String>,
    until: Option<String>,
    max_records: u32,
}

pub async fn run(target: &Target, format: OutputFormat, args: &LogsArgs) -> Outcome {
    let search = search_request(args, crate::clock::now_unix_ms())?;
    let mut client = connect(target).await?;
    let response = request_search(&mut client, &args.node, search.clone(), args.wait)
        .await
        .map_err(|status| call_failure(&target.url, status))?;
    let logs = host_logs(&response).map_err(|message| Failure {
        exit_code: exit::FAILED,
        message,
    })?;
    let view = LogsView {
        logs,
        search: SearchView {
            instance_uuid: Some(search.instance_uuid).filter(|uuid| !uuid.is_empty()),
            request_ids: search.request_ids,
            since: rfc3339_from_unix_ms(search.start_unix_ms),
            until: rfc3339_from_unix_ms(search.end_unix_ms),
            max_records: search.max_records,
        },
    };
    match format {
        OutputFormat::Json => print_json(&view)?,
        OutputFormat::Table | OutputFormat::Markdown => write_stdout(&render(&view))?,
    }
    Ok(0)
}

/// Builds the search and checks the limits the agent applies, so a bad
/// window fails here with the flag's name instead of on the node.
fn search_request(args: &LogsArgs, now_unix_ms: i64) -> Result<v1::SearchLogs, Failure> {
    let usage = |message: String| Failure {
        exit_code: exit::USAGE,
        message,
    };
    if args.request_ids.len() > MAX_REQUEST_IDS {
        return Err(usage(format!(
            "{} --request-id flags given; at most {MAX_REQUEST_IDS} fit one search",
            args.request_ids.len()
        )));
    }
    let start = args.since.unix_ms(now_unix_ms);
    let end = args.until.unix_ms(now_unix_ms);
    let format_time =
        |unix_ms: i64| rfc3339_from_unix_ms(unix_ms).unwrap_or_else(|| unix_ms.to_string());
    if start <= 0 || end <= start {
        return Err(usage(format!(
            "--since {} is not before --until {}; give a window that starts before it ends",
            format_time(start),
            format_time(end)
        )));
    }
    if end - start > MAX_WINDOW_MS {
        return Err(usage(format!(
            "the window from {} to {} is longer than the 7 days a search may cover; \
             narrow --since or --until",
            format_time(start),
            format_time(end)
        )));
    }
    Ok(v1::SearchLogs {
        instance_uuid: args.instance.clone().unwrap_or_default(),
        request_ids: args.request_ids.clone(),
        start_unix_ms: start,
        end_unix_ms: end,
        max_records: args.limit,
    })
}

/// Calls `SearchNodeLogs`, giving the agent `wait` and the call that much
/// more than the read deadline.
pub(super) async fn request_search(
    client: &mut OperatorServiceClient<Channel>,
    node: &str,
    search: v1::SearchLogs,
    wait: Duration,
) -> Result<v1::SearchNodeLogsResponse, tonic::Status> {
    let mut request = tonic::Request::new(v1::SearchNodeLogsRequest {
        node: node.to_string(),
        search: Some(search),
        wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
    });
    request.set_timeout(wait + READ_TIMEOUT);
    Ok(client.search_node_logs(request).await?.into_inner())
}

/// Returns the records of a search response, or the agent's reason for
/// not searching.
pub(super) fn host_logs(response: &v1::SearchNodeLogsResponse) -> Result<HostLogs, String> {
    let result = response.result.clone().unwrap_or_default();
    match &result.log_search {
        Some(found) => Ok(HostLogs::from_wire(&response.node, found)),
        None => Err(format!(
            "the agent on {} did not search: {}",
            response.node, result.detail
        )),
    }
}

/// Formats the response: a summary line, one row per record with the last
/// line of a traceback beneath it, and what limited the search.
fn render(view: &LogsView) -> String {
    let logs = &view.logs;
    let search = &view.search;
    let mut out = format!(
        "{} records from nova-compute's logs on {}, {} to {}\n",
        logs.records.len(),
        logs.node,
        search.since.as_deref().unwrap_or("-"),
        search.until.as_deref().unwrap_or("-"),
    );
    if let Some(problem) = &logs.problem {
        out.push_str(&format!(
            "nothing was searched: {}\n",
            escape_control(problem)
        ));
    }
    if !logs.records.is_empty() {
        let mut table = Table::new(&["TIME", "LEVEL", "CLASSIFICATION", "MESSAGE"]);
        for record in &logs.records {
            let notes = record
                .last_line()
                .map(|line| vec![line.trim().to_string()])
                .unwrap_or_default();
            let cells = vec![
                record.time.clone().unwrap_or_else(|| "-".into()),
                record.level.clone(),
                classification(record),
                message(record).to_string(),
            ];
            table.push(cells, notes);
        }
        out.push_str(&table.render());
    }
    if !logs.files_searched.is_empty() {
        out.push_str(&format!(
            "searched: {}\n",
            escape_control(&logs.files_searched.join(", "))
        ));
    }
    for note in &logs.file_notes {
        out.push_str(&format!("note: {}\n", escape_control(note)));
    }
    if logs.truncated {
        let fix = if search.max_records < MAX_RECORDS {
            format!("raise --limit (at most {MAX_RECORDS}) or narrow the window")
        } else {
            "narrow the window or the match".to_string()
        };
        out.push_str(&format!(
            "more records matched than the {} returned; faults and warnings were kept \
             first; {fix}\n",
            search.max_records
        ));
    }
    out
}

/// Returns the fault kind and signature a record matched, or `-`.
fn classification(record: &HostLogRecord) -> String {
    match (&record.fault_kind, &record.signature_id) {
        (Some(kind), Some(id)) => format!("{kind} ({id})"),
        (Some(kind), None) => kind.clone(),
        (None, Some(id)) => id.clone(),
        (None, None) => "-".to_string(),
    }
}

/// Returns the record's first line without oslo.log's date, time, PID and
/// level, which the other columns show.
fn message(record: &HostLogRecord) -> &str {
    let line = record.first_line();
    let mut fields = line.splitn(5, ' ');
    let prefix: Vec<&str> = fields.by_ref().take(4).collect();
    match (prefix.get(3), fields.next()) {
        (Some(level), Some(rest)) if *level == record.level => rest,
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(since: When, until: When) -> LogsArgs {
        LogsArgs {
            node: "compute-01".into(),
            instance: Some("0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01".into()),
            request_ids: Vec::new(),
            since,
            until,
            limit: 100,
            wait: Duration::from_secs(30),
        }
    }

    const NOW: i64 = 1_796_378_400_000;

    #[test]
    fn when_parses_durations_times_and_now() {
        assert_eq!(parse_when("now"), Ok(When::Now));
        assert_eq!(parse_when("90"), Ok(When::Ago(Duration::from_secs(90))));
        assert_eq!(parse_when("2h"), Ok(When::Ago(Duration::from_secs(7_200))));
        assert_eq!(parse_when("2026-12-04T10:00:00Z"), Ok(When::At(NOW)));
        assert_eq!(
            parse_when("2026-12-04T11:00:00+01:00"),
            Ok(When::At(NOW)),
            "an offset is applied"
        );
        let bad = parse_when("yesterday").unwrap_err();
        assert!(bad.contains("\"yesterday\""), "{bad}");
        let bad_time = parse_when("2026-13-04T10:00:00Z").unwrap_err();
        assert!(bad_time.contains("RFC 3339"), "{bad_time}");
    }

    #[test]
    fn ids_are_checked_and_lowercased() {
        assert_eq!(
            parse_instance("0F9C7E52-6A4B-4D3E-9B7A-2C1D5E8F9A01"),
            Ok("0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01".into())
        );
        assert!(parse_instance("web-1").is_err());
        assert_eq!(
            parse_request_id("req-0F9C7E52-6A4B-4D3E-9B7A-2C1D5E8F9A01"),
            Ok("req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01".into())
        );
        let bad = parse_request_id("0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01").unwrap_err();
        assert!(bad.contains("req-"), "{bad}");
    }

    #[test]
    fn window_is_checked_before_sending() {
        let day = Duration::from_secs(86_400);
        let search = search_request(&args(When::Ago(day), When::Now), NOW).unwrap();
        assert_eq!(search.start_unix_ms, NOW - 86_400_000);
        assert_eq!(search.end_unix_ms, NOW);
        assert_eq!(search.max_records, 100);

        let reversed = search_request(&args(When::Now, When::Ago(day)), NOW).unwrap_err();
        assert_eq!(reversed.exit_code, exit::USAGE);
        assert!(
            reversed.message.contains("not before --until"),
            "{}",
            reversed.message
        );

        let eight_days = search_request(&args(When::Ago(day * 8), When::Now), NOW).unwrap_err();
        assert_eq!(eight_days.exit_code, exit::USAGE);
        assert!(
            eight_days.message.contains("7 days"),
            "{}",
            eight_days.message
        );
    }

    #[test]
    fn message_drops_the_oslo_prefix() {
        let record = HostLogRecord {
            level: "ERROR".into(),
            text: "2026-12-04 10:00:30.000 4242 ERROR nova.compute.manager [req-1] boom\n\
                   Traceback (most recent call last):\n\
                   libvirt.libvirtError: gone"
                .into(),
            ..HostLogRecord::default()
        };
        assert_eq!(message(&record), "nova.compute.manager [req-1] boom");
        let plain = HostLogRecord {
            level: "ERROR".into(),
            text: "no oslo prefix here".into(),
            ..HostLogRecord::default()
        };
        assert_eq!(message(&plain), "no oslo prefix here");
    }
}
