-- novamedic controller schema, SQLite dialect.
--
-- Times are Unix milliseconds on the controller's clock. Protobuf messages are
-- stored prost-encoded, so a newer agent's unknown fields survive a round
-- trip. A PostgreSQL backend gets its own directory of migrations with the
-- same tables (BIGINT GENERATED ALWAYS AS IDENTITY for events.id, BYTEA for
-- the blobs).

CREATE TABLE nodes (
    name                TEXT    PRIMARY KEY NOT NULL,
    first_seen_unix_ms  BIGINT  NOT NULL,
    last_seen_unix_ms   BIGINT  NOT NULL DEFAULT 0,
    agent_version       TEXT    NOT NULL DEFAULT '',
    protocol_version    BIGINT  NOT NULL DEFAULT 0,
    -- JSON array of capability names.
    capabilities        TEXT    NOT NULL DEFAULT '[]',
    unit                TEXT    NOT NULL DEFAULT '',
    report_interval_ms  BIGINT  NOT NULL DEFAULT 0,
    -- prost-encoded novamedic.v1.NodeReport, NULL before the first report.
    latest_report       BLOB,
    -- novamedic.v1.HealthStatus number.
    health_status       INTEGER NOT NULL DEFAULT 0,
    -- JSON array of reason strings.
    health_reasons      TEXT    NOT NULL DEFAULT '[]'
);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix_ms  BIGINT  NOT NULL,
    node          TEXT    NOT NULL REFERENCES nodes (name),
    kind          TEXT    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT '',
    actor         TEXT    NOT NULL DEFAULT '',
    command_id    TEXT    NOT NULL DEFAULT ''
);

CREATE INDEX events_node_id ON events (node, id);

CREATE TABLE commands (
    command_id          TEXT    PRIMARY KEY NOT NULL,
    node                TEXT    NOT NULL REFERENCES nodes (name),
    unit                TEXT    NOT NULL,
    reason              TEXT    NOT NULL,
    requested_by        TEXT    NOT NULL,
    issued_at_unix_ms   BIGINT  NOT NULL,
    -- NULL while no outcome is known; otherwise a word such as "succeeded",
    -- "failed", "rejected", "timed_out" or "not_delivered".
    outcome             TEXT,
    -- prost-encoded novamedic.v1.CommandResult, NULL while unfinished.
    result              BLOB,
    finished_at_unix_ms BIGINT
);

CREATE INDEX commands_node ON commands (node, issued_at_unix_ms);
