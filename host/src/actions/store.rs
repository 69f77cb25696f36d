//! Actions and the safety switches in redb.
//!
//! | table | key | value |
//! |---|---|---|
//! | `actions` | action id (`A-000007`) | the action as JSON |
//! | `meta` | `safety` | the safety switches as JSON (absent: observe mode, switch off) |
//! | `meta` | `action_seq` | the last action number handed out |

use anyhow::{Context, Result, bail};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::ledger::{Action, ActionStatus};
use super::policy::Safety;
use crate::store::{META, Store};

/// Actions by id.
pub const ACTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("actions");
const SAFETY: &str = "safety";
const ACTION_SEQ: &str = "action_seq";

/// Creates the action tables (a schema step).
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(ACTIONS)?;
    Ok(())
}

/// The action tables.
#[derive(Clone)]
pub struct ActionStore {
    store: Store,
}

impl ActionStore {
    /// Over a store.
    pub fn new(store: Store) -> ActionStore {
        ActionStore { store }
    }

    /// Every action, oldest first.
    pub fn all(&self) -> Result<Vec<Action>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(ACTIONS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value()).context("reading an action")?);
        }
        Ok(out)
    }

    /// Actions, newest first, optionally only those with `status`.
    pub fn list(&self, status: Option<ActionStatus>) -> Result<Vec<Action>> {
        let mut all = self.all()?;
        all.reverse();
        Ok(all.into_iter().filter(|a| status.is_none_or(|s| a.status == s)).collect())
    }

    /// One action.
    pub fn get(&self, id: &str) -> Result<Option<Action>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(ACTIONS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).context("reading an action")?)),
            None => Ok(None),
        }
    }

    /// One action, or an error saying how to find one.
    pub fn require(&self, id: &str) -> Result<Action> {
        match self.get(id)? {
            Some(a) => Ok(a),
            None => bail!("no action {id} (see `operator-host actions list --status all`)"),
        }
    }

    /// Writes actions in one transaction.
    pub fn save(&self, actions: &[&Action]) -> Result<()> {
        let txn = self.store.db().begin_write()?;
        {
            let mut table = txn.open_table(ACTIONS)?;
            for action in actions {
                table.insert(action.id.as_str(), serde_json::to_vec(action)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Hands out the next action id.
    pub fn next_id(&self) -> Result<String> {
        let txn = self.store.db().begin_write()?;
        let next = {
            let mut meta = txn.open_table(META)?;
            let last: u64 = match meta.get(ACTION_SEQ)? {
                Some(v) => v.value().parse().context("action_seq is not a number")?,
                None => 0,
            };
            meta.insert(ACTION_SEQ, (last + 1).to_string().as_str())?;
            last + 1
        };
        txn.commit()?;
        Ok(format!("A-{next:06}"))
    }

    /// The safety switches (observe mode when never set).
    pub fn safety(&self) -> Result<Safety> {
        let txn = self.store.db().begin_read()?;
        let meta = txn.open_table(META)?;
        match meta.get(SAFETY)? {
            Some(v) => serde_json::from_str(v.value()).context("reading the safety switches"),
            None => Ok(Safety::default()),
        }
    }

    /// Writes the safety switches together with the actions a change cancelled.
    pub fn save_safety(&self, safety: &Safety, actions: &[&Action]) -> Result<()> {
        let txn = self.store.db().begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(SAFETY, serde_json::to_string(safety)?.as_str())?;
            let mut table = txn.open_table(ACTIONS)?;
            for action in actions {
                table.insert(action.id.as_str(), serde_json::to_vec(action)?.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
