//! Robot accounts in redb: name -> record (JSON), with their audit records in
//! the same transaction.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{corrupt, to_json};
use crate::store::StoreResult;
use crate::store::audit::{Action, Actor, Change};
use crate::store::robots::{Robot, RobotStore};

const ROBOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("robots");

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(ROBOTS)?;
    Ok(())
}

#[async_trait::async_trait]
impl RobotStore for super::RedbMetaStore {
    async fn create_robot(&self, robot: &Robot, actor: &Actor) -> StoreResult<bool> {
        let (robot, actor) = (robot.clone(), actor.clone());
        self.write_if(move |txn| {
            let mut table = txn.open_table(ROBOTS)?;
            if table.get(robot.name.as_str())?.is_some() {
                return Ok((false, false));
            }
            table.insert(robot.name.as_str(), to_json(&robot)?.as_slice())?;
            let change = Change::new(&actor, Action::RobotCreate).details(serde_json::json!({
                "robot": robot.name,
                "groups": robot.groups,
                "expires": robot.expires,
            }));
            super::audit::append(txn, change)?;
            Ok((true, true))
        })
        .await
    }

    async fn revoke_robot(&self, name: &str, actor: &Actor) -> StoreResult<bool> {
        let (name, actor) = (name.to_string(), actor.clone());
        self.write_if(move |txn| {
            let mut table = txn.open_table(ROBOTS)?;
            let mut robot: Robot = match table.get(name.as_str())? {
                Some(v) => serde_json::from_slice(v.value()).map_err(corrupt)?,
                None => return Ok((false, false)),
            };
            if robot.revoked.is_some() {
                return Ok((false, false));
            }
            let change = Change::new(&actor, Action::RobotRevoke)
                .details(serde_json::json!({ "robot": robot.name }));
            let record = super::audit::append(txn, change)?;
            robot.revoked = Some(record.time);
            table.insert(name.as_str(), to_json(&robot)?.as_slice())?;
            Ok((true, true))
        })
        .await
    }

    async fn robots(&self) -> StoreResult<Vec<Robot>> {
        self.read(|txn| {
            txn.open_table(ROBOTS)?
                .iter()?
                .map(|e| {
                    let (_, v) = e?;
                    serde_json::from_slice(v.value()).map_err(corrupt)
                })
                .collect()
        })
    }
}
