//! The `policy_state` table: the policy engine's state as one JSON document.
//! The store keeps it opaque; the policy module owns its shape.

use super::events::insert_event;
use super::{NewEvent, Store, StoreError};

impl Store {
    /// Returns the saved policy state, or None before the first save.
    pub async fn load_policy_state(&self) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT state FROM policy_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(|err| self.query_error("reading the policy state", err))?;
        Ok(row.map(|(state,)| state))
    }

    /// Replaces the policy state and appends `events` in one transaction.
    pub async fn save_policy_state(
        &self,
        state: &str,
        now_unix_ms: i64,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let operation = "saving the policy state";
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|err| self.query_error(operation, err))?;
        sqlx::query(
            "INSERT INTO policy_state (id, state, updated_at_unix_ms) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, \
             updated_at_unix_ms = excluded.updated_at_unix_ms",
        )
        .bind(state)
        .bind(now_unix_ms)
        .execute(&mut *tx)
        .await
        .map_err(|err| self.query_error(operation, err))?;
        for event in events {
            insert_event(&mut tx, event)
                .await
                .map_err(|err| self.query_error(operation, err))?;
        }
        tx.commit()
            .await
            .map_err(|err| self.query_error(operation, err))
    }
}
