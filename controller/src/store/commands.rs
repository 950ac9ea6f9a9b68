//! The `commands` table: every command the controller issued and its outcome.

use novamedic_proto::v1;
use prost::Message;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::{CommandRecord, NewCommand, NewEvent, Store, StoreError};

const COMMAND_COLUMNS: &str = "SELECT command_id, node, unit, reason, requested_by, \
     issued_at_unix_ms, outcome, result, finished_at_unix_ms FROM commands";

impl Store {
    /// Records an issued command together with its `command_sent` event.
    pub async fn record_command(
        &self,
        command: &NewCommand,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        let operation = "recording a command";
        let mut tx = self.begin(operation).await?;
        sqlx::query(
            "INSERT INTO commands (command_id, node, unit, reason, requested_by, \
             issued_at_unix_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&command.command_id)
        .bind(&command.node)
        .bind(&command.unit)
        .bind(&command.reason)
        .bind(&command.requested_by)
        .bind(command.issued_at_unix_ms)
        .execute(&mut *tx)
        .await
        .map_err(|err| self.query_error(operation, err))?;
        self.finish_with_events(tx, operation, std::slice::from_ref(event))
            .await
    }

    /// Stores the outcome of a command together with its event. Returns false,
    /// and still appends the event, when no unfinished command has this id:
    /// the command is unknown or already finished.
    pub async fn finish_command(
        &self,
        result: &v1::CommandResult,
        outcome: &str,
        finished_at_unix_ms: i64,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        let operation = "finishing a command";
        let mut tx = self.begin(operation).await?;
        let updated = sqlx::query(
            "UPDATE commands SET outcome = $2, result = $3, finished_at_unix_ms = $4 \
             WHERE command_id = $1 AND finished_at_unix_ms IS NULL",
        )
        .bind(&result.command_id)
        .bind(outcome)
        .bind(result.encode_to_vec())
        .bind(finished_at_unix_ms)
        .execute(&mut *tx)
        .await
        .map_err(|err| self.query_error(operation, err))?
        .rows_affected();
        self.finish_with_events(tx, operation, std::slice::from_ref(event))
            .await?;
        Ok(updated == 1)
    }

    /// Returns one command, `None` when the id is unknown.
    pub async fn get_command(&self, command_id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let sql = format!("{COMMAND_COLUMNS} WHERE command_id = $1");
        let row = sqlx::query(&sql)
            .bind(command_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.query_error("reading a command", err))?;
        row.map(|row| self.command_from_row(&row)).transpose()
    }

    /// Returns every command, oldest first.
    pub async fn list_commands(&self) -> Result<Vec<CommandRecord>, StoreError> {
        let sql = format!("{COMMAND_COLUMNS} ORDER BY issued_at_unix_ms, command_id");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(|err| self.query_error("listing commands", err))?;
        rows.iter().map(|row| self.command_from_row(row)).collect()
    }

    fn command_from_row(&self, row: &SqliteRow) -> Result<CommandRecord, StoreError> {
        decode_command(row).map_err(|err| self.query_error("reading a command row", err))
    }
}

fn decode_command(row: &SqliteRow) -> Result<CommandRecord, sqlx::Error> {
    let result_bytes: Option<Vec<u8>> = row.try_get("result")?;
    let result = match result_bytes {
        Some(bytes) => Some(
            v1::CommandResult::decode(bytes.as_slice())
                .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
        ),
        None => None,
    };
    Ok(CommandRecord {
        command: NewCommand {
            command_id: row.try_get("command_id")?,
            node: row.try_get("node")?,
            unit: row.try_get("unit")?,
            reason: row.try_get("reason")?,
            requested_by: row.try_get("requested_by")?,
            issued_at_unix_ms: row.try_get("issued_at_unix_ms")?,
        },
        outcome: row.try_get("outcome")?,
        result,
        finished_at_unix_ms: row.try_get("finished_at_unix_ms")?,
    })
}
