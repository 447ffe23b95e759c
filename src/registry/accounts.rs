//! Robot accounts and the audit records of authentication: what the admin API
//! and the HTTP edge's denials write.

use super::{Registry, RegistryError, Result};
use crate::store::{Actor, Change, Robot};

impl Registry {
    /// Creates a robot; `RegistryError::RobotExists` if the name was ever used.
    pub async fn create_robot(&self, robot: &Robot, actor: &Actor) -> Result<()> {
        if !self.meta.create_robot(robot, actor).await? {
            return Err(RegistryError::RobotExists(robot.name.clone()));
        }
        Ok(())
    }

    /// Revokes a robot; `RegistryError::RobotUnknown` if none of that name is live.
    pub async fn revoke_robot(&self, name: &str, actor: &Actor) -> Result<()> {
        if !self.meta.revoke_robot(name, actor).await? {
            return Err(RegistryError::RobotUnknown(name.to_string()));
        }
        Ok(())
    }

    pub async fn robots(&self) -> Result<Vec<Robot>> {
        Ok(self.meta.robots().await?)
    }

    /// Records a change that has no other write (a failed login, a denial).
    pub async fn record_change(&self, change: Change) -> Result<()> {
        self.meta.record(change).await?;
        Ok(())
    }
}
