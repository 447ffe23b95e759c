//! Robot accounts: identities for CI that log in with an API token. Only the
//! token's SHA-256 is kept (a token is 256 random bits, so a fast hash is
//! enough); a revoked robot keeps its record, so its name is not reused.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use super::audit::Actor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Robot {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub token_sha256: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// RFC 3339.
    pub created: String,
    pub created_by: String,
    /// RFC 3339; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
}

impl Robot {
    /// Whether the robot may log in at `now_ms` (milliseconds since the epoch).
    pub fn active_at(&self, now_ms: i64) -> bool {
        self.revoked.is_none()
            && self
                .expires
                .as_deref()
                .is_none_or(|e| super::audit::time_ms(e).is_some_and(|e| now_ms < e))
    }
}

#[async_trait]
pub trait RobotStore: Send + Sync + 'static {
    /// Creates a robot and its audit record; `Ok(false)` if the name is taken
    /// (by a live or a revoked robot).
    async fn create_robot(&self, robot: &Robot, actor: &Actor) -> StoreResult<bool>;
    /// Revokes a robot and records it; `Ok(false)` if there is no live robot of that name.
    async fn revoke_robot(&self, name: &str, actor: &Actor) -> StoreResult<bool>;
    /// Every robot, revoked ones included, by name.
    async fn robots(&self) -> StoreResult<Vec<Robot>>;
}
