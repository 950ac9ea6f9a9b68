-- The self-healing policy's memory: per-node streaks, restart history,
-- silences, escalations, restarts in flight, and the fleet-wide pause. One
-- row, JSON, written in the same transaction as the events of the decision
-- that changed it, so a restarted controller neither repeats a restart nor
-- forgets a limit.
CREATE TABLE policy_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    state               TEXT    NOT NULL,
    updated_at_unix_ms  BIGINT  NOT NULL
);

-- Fleet-wide events (automation paused or resumed, the storm guard) concern
-- no single node, so events.node becomes optional: NULL for those, checked
-- against nodes otherwise. SQLite cannot drop a NOT NULL constraint in
-- place, so the table is rebuilt with its rows and ids.
CREATE TABLE events_rebuilt (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    time_unix_ms  BIGINT  NOT NULL,
    node          TEXT    REFERENCES nodes (name),
    kind          TEXT    NOT NULL,
    detail        TEXT    NOT NULL DEFAULT '',
    actor         TEXT    NOT NULL DEFAULT '',
    command_id    TEXT    NOT NULL DEFAULT ''
);
INSERT INTO events_rebuilt (id, time_unix_ms, node, kind, detail, actor, command_id)
    SELECT id, time_unix_ms, node, kind, detail, actor, command_id FROM events;
DROP TABLE events;
ALTER TABLE events_rebuilt RENAME TO events;
CREATE INDEX events_node_id ON events (node, id);
