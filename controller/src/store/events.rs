//! The `events` table: the controller's append-only history.

use novamedic_proto::v1;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{NewEvent, Store, StoreError};

impl Store {
    /// Appends one event on its own and returns its id.
    pub async fn append_event(&self, event: &NewEvent) -> Result<i64, StoreError> {
        let operation = "appending an event";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|err| self.query_error(operation, err))?;
        insert_event(&mut conn, event)
            .await
            .map_err(|err| self.query_error(operation, err))
    }

    /// Returns at most `limit` events, newest first, of one node or of all.
    pub async fn list_events(
        &self,
        node: Option<&str>,
        limit: u32,
    ) -> Result<Vec<v1::Event>, StoreError> {
        let query = match node {
            Some(node) => sqlx::query(
                "SELECT id, time_unix_ms, node, kind, detail, actor, command_id FROM events \
                 WHERE node = $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(node),
            None => sqlx::query(
                "SELECT id, time_unix_ms, node, kind, detail, actor, command_id FROM events \
                 ORDER BY id DESC LIMIT $1",
            ),
        };
        let rows = query
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.query_error("listing events", err))?;
        rows.iter()
            .map(event_from_row)
            .collect::<Result<_, _>>()
            .map_err(|err| self.query_error("reading an event row", err))
    }
}

/// Inserts one event on `conn`, which may be inside a transaction.
pub(super) async fn insert_event(
    conn: &mut SqliteConnection,
    event: &NewEvent,
) -> Result<i64, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO events (time_unix_ms, node, kind, detail, actor, command_id) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(event.time_unix_ms)
    // An empty node is a fleet-wide event, stored as NULL.
    .bind(Some(event.node.as_str()).filter(|node| !node.is_empty()))
    .bind(&event.kind)
    .bind(&event.detail)
    .bind(&event.actor)
    .bind(&event.command_id)
    .fetch_one(conn)
    .await?;
    row.try_get("id")
}

fn event_from_row(row: &SqliteRow) -> Result<v1::Event, sqlx::Error> {
    Ok(v1::Event {
        id: row.try_get("id")?,
        time_unix_ms: row.try_get("time_unix_ms")?,
        node: row
            .try_get::<Option<String>, _>("node")?
            .unwrap_or_default(),
        kind: row.try_get("kind")?,
        detail: row.try_get("detail")?,
        actor: row.try_get("actor")?,
        command_id: row.try_get("command_id")?,
    })
}
