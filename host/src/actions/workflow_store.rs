//! Workflow runs in redb.
//!
//! | table | key | value |
//! |---|---|---|
//! | `workflows` | run id (`W-000007`) | the run as JSON |
//! | `meta` | `workflow_seq` | the last run number handed out |

use anyhow::{Context, Result, bail};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use super::workflow::{WorkflowRun, WorkflowStatus};
use crate::store::{META, Store};

/// Workflow runs by id.
pub const WORKFLOWS: TableDefinition<&str, &[u8]> = TableDefinition::new("workflows");
const WORKFLOW_SEQ: &str = "workflow_seq";

/// Creates the workflow table (a schema step).
pub fn create_tables(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(WORKFLOWS)?;
    Ok(())
}

/// The workflow table.
#[derive(Clone)]
pub struct WorkflowStore {
    store: Store,
}

impl WorkflowStore {
    /// Over a store.
    pub fn new(store: Store) -> WorkflowStore {
        WorkflowStore { store }
    }

    /// Every run, oldest first.
    pub fn all(&self) -> Result<Vec<WorkflowRun>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(WORKFLOWS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value()).context("reading a workflow run")?);
        }
        Ok(out)
    }

    /// Runs, newest first, optionally only those with `status`.
    pub fn list(&self, status: Option<WorkflowStatus>) -> Result<Vec<WorkflowRun>> {
        let mut all = self.all()?;
        all.reverse();
        Ok(all.into_iter().filter(|r| status.is_none_or(|s| r.status == s)).collect())
    }

    /// Runs the engine advances: running or compensating, oldest first.
    pub fn active(&self) -> Result<Vec<WorkflowRun>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|r| matches!(r.status, WorkflowStatus::Running | WorkflowStatus::Compensating))
            .collect())
    }

    /// One run.
    pub fn get(&self, id: &str) -> Result<Option<WorkflowRun>> {
        let txn = self.store.db().begin_read()?;
        let table = txn.open_table(WORKFLOWS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).context("reading a workflow run")?)),
            None => Ok(None),
        }
    }

    /// One run, or an error saying how to find one.
    pub fn require(&self, id: &str) -> Result<WorkflowRun> {
        match self.get(id)? {
            Some(r) => Ok(r),
            None => bail!("no workflow {id} (see `operator-host workflows list --status all`)"),
        }
    }

    /// Writes a run.
    pub fn save(&self, run: &WorkflowRun) -> Result<()> {
        let txn = self.store.db().begin_write()?;
        {
            let mut table = txn.open_table(WORKFLOWS)?;
            table.insert(run.id.as_str(), serde_json::to_vec(run)?.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Hands out the next run id.
    pub fn next_id(&self) -> Result<String> {
        let txn = self.store.db().begin_write()?;
        let next = {
            let mut meta = txn.open_table(META)?;
            let last: u64 = match meta.get(WORKFLOW_SEQ)? {
                Some(v) => v.value().parse().context("workflow_seq is not a number")?,
                None => 0,
            };
            meta.insert(WORKFLOW_SEQ, (last + 1).to_string().as_str())?;
            last + 1
        };
        txn.commit()?;
        Ok(format!("W-{next:06}"))
    }
}
