//! Events: audit records as CloudEvents 1.0 (structured JSON mode), delivered
//! to the policy's webhooks from the audit log, which is the durable outbox. Each
//! receiver has a cursor (the last sequence number it acknowledged with a 2xx),
//! kept in the same database, so a restart, even after `kill -9`, resumes where
//! delivery stood: a receiver may see an event twice, never miss one.
//!
//! Deliveries are signed as Standard Webhooks signs them: headers
//! `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64
//! HMAC-SHA256(secret, "<id>.<timestamp>.<body>")>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use super::policy::Webhook;
use crate::store::audit::{AuditQuery, AuditRecord};
use crate::store::{MetaStore, StoreResult};

pub const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=UTF-8";
/// The type prefix of Berth's events: `dev.berth.alias.promote` and so on.
pub const TYPE_PREFIX: &str = "dev.berth.";

/// The CloudEvent of an audit record. Its id is the record's hash: unique,
/// and the same on every redelivery.
pub fn cloud_event(record: &AuditRecord, source: &str) -> Value {
    let subject = match (&record.repo, &record.tag, &record.digest) {
        (Some(r), Some(t), _) => Some(format!("{r}:{t}")),
        (Some(r), None, Some(d)) => Some(format!("{r}@{d}")),
        (Some(r), None, None) => Some(r.clone()),
        _ => None,
    };
    let mut e = json!({
        "specversion": "1.0",
        "id": record.hash,
        "source": source,
        "type": format!("{TYPE_PREFIX}{}", record.action.as_str()),
        "time": record.time,
        "datacontenttype": "application/json",
        "berthseq": record.seq,
        "data": record,
    });
    if let Some(s) = subject {
        e["subject"] = Value::String(s);
    }
    e
}

/// The HMAC key of a secret: Standard Webhooks' `whsec_<base64>` form is decoded,
/// any other secret is used as its bytes.
fn hmac_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix("whsec_")
        .and_then(super::unb64)
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The signature headers of a delivery (only `webhook-id` and `webhook-timestamp`
/// without a secret).
pub fn sign_delivery(secret: Option<&str>, id: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let timestamp = jiff::Timestamp::now().as_second().to_string();
    let mut headers = vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", timestamp.clone()),
    ];
    if let Some(secret) = secret
        && let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(&hmac_key(secret))
    {
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let sig = super::b64(&mac.finalize().into_bytes());
        headers.push(("webhook-signature", format!("v1,{sig}")));
    }
    headers
}

/// How delivery to one receiver stands, for metrics and the API.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReceiverStatus {
    pub cursor: u64,
    pub delivered: u64,
    pub failures: u64,
    /// The error of the last failed attempt, until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Delivery status by receiver name.
#[derive(Debug, Default)]
pub struct DeliveryStatus(Mutex<BTreeMap<String, ReceiverStatus>>);

impl DeliveryStatus {
    pub fn snapshot(&self) -> BTreeMap<String, ReceiverStatus> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut ReceiverStatus)) {
        if let Ok(mut m) = self.0.lock() {
            f(m.entry(name.to_string()).or_default());
        }
    }

    fn retain(&self, names: &[String]) {
        if let Ok(mut m) = self.0.lock() {
            m.retain(|k, _| names.contains(k));
        }
    }
}

/// Records read from the log per round.
const BATCH: usize = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Delivers the log to one receiver, in order, for as long as it runs: each
/// record the receiver wants is posted until it answers 2xx (backing off from
/// one second to five minutes), then the cursor moves past it.
pub async fn deliver(
    meta: Arc<dyn MetaStore>,
    http: reqwest::Client,
    hook: Webhook,
    source: String,
    status: Arc<DeliveryStatus>,
) {
    let mut changes = meta.changes();
    let mut cursor = match start_cursor(meta.as_ref(), &hook.name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(receiver = %hook.name, error = %e, "event delivery cannot start");
            return;
        }
    };
    status.update(&hook.name, |s| s.cursor = cursor);
    loop {
        // Marked seen before reading, so a change during the read wakes us again.
        changes.borrow_and_update();
        let page = match meta.audit_page(&AuditQuery::default(), cursor, BATCH).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(receiver = %hook.name, error = %e, "reading the event log failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for (record, _) in &page.lines {
            if hook.wants(record.action, record.repo.as_deref()) {
                post_until_taken(&http, &hook, record, &source, &status).await;
            }
            cursor = record.seq;
            if let Err(e) = meta.set_delivery_cursor(&hook.name, cursor).await {
                tracing::warn!(receiver = %hook.name, error = %e, "saving the delivery cursor failed");
            }
            status.update(&hook.name, |s| s.cursor = cursor);
        }
        if page.next.is_none() && changes.changed().await.is_err() {
            return;
        }
    }
}

/// Where a receiver's delivery resumes: its saved cursor, or, for a receiver
/// new to this database, the log's head (it is told of changes from now on).
async fn start_cursor(meta: &dyn MetaStore, name: &str) -> StoreResult<u64> {
    if let Some(c) = meta.delivery_cursors().await?.get(name) {
        return Ok(*c);
    }
    let head = meta.audit_head().await?.map_or(0, |(seq, _)| seq);
    meta.set_delivery_cursor(name, head).await?;
    Ok(head)
}

async fn post_until_taken(
    http: &reqwest::Client,
    hook: &Webhook,
    record: &AuditRecord,
    source: &str,
    status: &DeliveryStatus,
) {
    let event = cloud_event(record, source);
    let body = serde_json::to_vec(&event).unwrap_or_default();
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut req = http
            .post(hook.hook.url.clone())
            .timeout(hook.hook.timeout)
            .header(reqwest::header::CONTENT_TYPE, CLOUDEVENTS_JSON);
        for (k, v) in sign_delivery(hook.hook.secret.as_deref(), &record.hash, &body) {
            req = req.header(k, v);
        }
        let error = match req.body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => {
                status.update(&hook.name, |s| {
                    s.delivered += 1;
                    s.last_error = None;
                });
                return;
            }
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => e.to_string(),
        };
        tracing::warn!(receiver = %hook.name, seq = record.seq, %error,
            retry_in_secs = backoff.as_secs(), "event delivery failed");
        status.update(&hook.name, |s| {
            s.failures += 1;
            s.last_error = Some(error);
        });
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Runs one delivery task per webhook of the policy, replacing them when the
/// policy's webhooks change.
pub struct Deliveries {
    tasks: Mutex<BTreeMap<String, (String, tokio::task::JoinHandle<()>)>>,
    pub status: Arc<DeliveryStatus>,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            tasks: Mutex::new(BTreeMap::new()),
            status: Arc::new(DeliveryStatus::default()),
        }
    }
}

impl Deliveries {
    /// Starts, keeps or stops tasks so that exactly `hooks` are delivered to. A
    /// receiver whose settings changed is restarted (from its saved cursor).
    pub fn sync(
        &self,
        hooks: &[Webhook],
        meta: &Arc<dyn MetaStore>,
        http: &reqwest::Client,
        source: &str,
    ) {
        let Ok(mut tasks) = self.tasks.lock() else {
            return;
        };
        let wanted: BTreeMap<String, String> = hooks
            .iter()
            .map(|h| (h.name.clone(), format!("{h:?}")))
            .collect();
        tasks.retain(|name, (settings, task)| {
            let keep = wanted.get(name) == Some(settings);
            if !keep {
                task.abort();
            }
            keep
        });
        for hook in hooks {
            if tasks.contains_key(&hook.name) {
                continue;
            }
            let task = tokio::spawn(deliver(
                meta.clone(),
                http.clone(),
                hook.clone(),
                source.to_string(),
                self.status.clone(),
            ));
            tasks.insert(hook.name.clone(), (format!("{hook:?}"), task));
        }
        self.status
            .retain(&hooks.iter().map(|h| h.name.clone()).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_are_signed_over_id_timestamp_and_body() {
        let h = sign_delivery(Some("s3cret"), "msg_1", b"{\"a\":1}");
        let get = |k: &str| {
            h.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        let ts = get("webhook-timestamp");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(format!("msg_1.{ts}.{{\"a\":1}}").as_bytes());
        let want = crate::governance::b64(&mac.finalize().into_bytes());
        assert_eq!(get("webhook-signature"), format!("v1,{want}"));
        assert_eq!(get("webhook-id"), "msg_1");
        assert!(
            sign_delivery(None, "x", b"")
                .iter()
                .all(|(k, _)| *k != "webhook-signature")
        );
        // Standard Webhooks' secret form is its base64-decoded bytes.
        assert_eq!(hmac_key("whsec_c2VjcmV0"), b"secret");
    }
}
