//! The `nodes` table.

use novamedic_proto::v1;
use prost::Message;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::events::insert_event;
use super::{
    from_sql_int, to_sql_int, HelloRecord, LatestReport, NewEvent, NodeRecord, Store, StoreError,
};

const NODE_COLUMNS: &str = "name, first_seen_unix_ms, last_seen_unix_ms, agent_version, \
     protocol_version, capabilities, unit, report_interval_ms, latest_report, health_status, \
     health_reasons";

impl Store {
    /// Inserts or updates the node an agent announced in its Hello, together
    /// with `events`. `first_seen_unix_ms` is kept from the first Hello.
    pub async fn upsert_hello(
        &self,
        hello: &HelloRecord,
        seen_at_unix_ms: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let operation = "saving an agent's hello";
        let mut tx = self.begin(operation).await?;
        sqlx::query(
            "INSERT INTO nodes (name, first_seen_unix_ms, agent_version, protocol_version, \
             capabilities, unit, report_interval_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name) DO UPDATE SET agent_version = excluded.agent_version, \
             protocol_version = excluded.protocol_version, capabilities = excluded.capabilities, \
             unit = excluded.unit, report_interval_ms = excluded.report_interval_ms",
        )
        .bind(&hello.node)
        .bind(seen_at_unix_ms)
        .bind(&hello.agent_version)
        .bind(i64::from(hello.protocol_version))
        .bind(to_json(&hello.capabilities))
        .bind(&hello.unit)
        .bind(to_sql_int(hello.report_interval_ms))
        .execute(&mut *tx)
        .await
        .map_err(|err| self.query_error(operation, err))?;
        self.finish_with_events(tx, operation, events).await
    }

    /// Stores a node's latest report and health, together with the events the
    /// report caused. The events are always appended; the report replaces the
    /// stored one only when it arrived no earlier (see [`Store::save_reports`]).
    pub async fn save_report(
        &self,
        node: &str,
        report: &v1::NodeReport,
        health: &v1::Health,
        arrived_at_unix_ms: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let operation = "saving a report";
        let mut tx = self.begin(operation).await?;
        let latest = LatestReport {
            node: node.to_string(),
            report: report.clone(),
            health: health.clone(),
            arrived_at_unix_ms,
        };
        update_latest_report(&mut tx, &latest)
            .await
            .map_err(|err| self.query_error(operation, err))?;
        self.finish_with_events(tx, operation, events).await
    }

    /// Stores many nodes' latest reports in one transaction, so one fsync
    /// covers them all. A report older than the stored one is skipped: a
    /// batch taken before a node's urgent write may commit after it.
    pub async fn save_reports(&self, reports: &[LatestReport]) -> Result<(), StoreError> {
        let operation = "saving a batch of reports";
        let mut tx = self.begin(operation).await?;
        for latest in reports {
            update_latest_report(&mut tx, latest)
                .await
                .map_err(|err| self.query_error(operation, err))?;
        }
        tx.commit()
            .await
            .map_err(|err| self.query_error(operation, err))
    }

    /// Stores a health judged by the controller itself (STALE), together with
    /// its events.
    pub async fn save_health(
        &self,
        node: &str,
        health: &v1::Health,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let operation = "saving a node's health";
        let mut tx = self.begin(operation).await?;
        sqlx::query("UPDATE nodes SET health_status = $2, health_reasons = $3 WHERE name = $1")
            .bind(node)
            .bind(health.status)
            .bind(to_json(&health.reasons))
            .execute(&mut *tx)
            .await
            .map_err(|err| self.query_error(operation, err))?;
        self.finish_with_events(tx, operation, events).await
    }

    /// Returns every stored node, ordered by name.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.query_error("listing nodes", err))?;
        rows.iter().map(|row| self.node_from_row(row)).collect()
    }

    /// Returns one node, `None` when it was never stored.
    pub async fn get_node(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.query_error("reading a node", err))?;
        row.map(|row| self.node_from_row(&row)).transpose()
    }

    pub(super) async fn begin(
        &self,
        operation: &'static str,
    ) -> Result<Transaction<'static, Sqlite>, StoreError> {
        self.pool
            .begin()
            .await
            .map_err(|err| self.query_error(operation, err))
    }

    /// Appends `events` inside `tx` and commits.
    pub(super) async fn finish_with_events(
        &self,
        mut tx: Transaction<'static, Sqlite>,
        operation: &'static str,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        for event in events {
            insert_event(&mut tx, event)
                .await
                .map_err(|err| self.query_error(operation, err))?;
        }
        tx.commit()
            .await
            .map_err(|err| self.query_error(operation, err))
    }

    fn node_from_row(&self, row: &SqliteRow) -> Result<NodeRecord, StoreError> {
        self.decode_node(row)
            .map_err(|err| self.query_error("reading a node row", err))
    }

    fn decode_node(&self, row: &SqliteRow) -> Result<NodeRecord, sqlx::Error> {
        let name: String = row.try_get("name")?;
        let report_bytes: Option<Vec<u8>> = row.try_get("latest_report")?;
        let hello = HelloRecord {
            node: name.clone(),
            agent_version: row.try_get("agent_version")?,
            protocol_version: u32::try_from(row.try_get::<i64, _>("protocol_version")?)
                .unwrap_or(0),
            capabilities: from_json(&name, &row.try_get::<String, _>("capabilities")?),
            unit: row.try_get("unit")?,
            report_interval_ms: from_sql_int(row.try_get("report_interval_ms")?),
        };
        Ok(NodeRecord {
            first_seen_unix_ms: row.try_get("first_seen_unix_ms")?,
            last_seen_unix_ms: row.try_get("last_seen_unix_ms")?,
            latest_report: report_bytes.and_then(|bytes| decode_report(&name, &bytes)),
            health: v1::Health {
                status: row.try_get("health_status")?,
                reasons: from_json(&name, &row.try_get::<String, _>("health_reasons")?),
            },
            hello,
        })
    }
}

/// Replaces the node's stored report unless the stored one arrived later.
async fn update_latest_report(
    tx: &mut Transaction<'static, Sqlite>,
    latest: &LatestReport,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE nodes SET last_seen_unix_ms = $2, latest_report = $3, health_status = $4, \
         health_reasons = $5 WHERE name = $1 AND last_seen_unix_ms <= $2",
    )
    .bind(&latest.node)
    .bind(latest.arrived_at_unix_ms)
    .bind(latest.report.encode_to_vec())
    .bind(latest.health.status)
    .bind(to_json(&latest.health.reasons))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn to_json(values: &[String]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".to_string())
}

/// Parses a stored JSON list. A damaged value loses only that list, with a
/// warning, so one bad row cannot hide the whole fleet.
fn from_json(node: &str, text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|err| {
        tracing::warn!(node, error = %err, "stored list is not a JSON array of strings; ignoring it");
        Vec::new()
    })
}

fn decode_report(node: &str, bytes: &[u8]) -> Option<v1::NodeReport> {
    match v1::NodeReport::decode(bytes) {
        Ok(report) => Some(report),
        Err(err) => {
            tracing::warn!(node, error = %err, "stored report cannot be decoded; ignoring it");
            None
        }
    }
}
