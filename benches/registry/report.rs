//! Per-round figures, medians, and the one table: each metric for both
//! registries, Berth/distribution, Berth as a share of its ceiling, and the
//! issue's targets marked met or missed.

use std::collections::{BTreeMap, BTreeSet};

pub const DIST: &str = "distribution";
pub const BERTH: &str = "berth";
pub const BERTH_NOFSYNC: &str = "berth-nofsync";
pub const BERTH_DIRECT: &str = "berth-direct";
/// Another Berth binary (`--baseline`), default flags and `--direct-io`: the
/// build before a change, measured in the same rounds as the build after it.
pub const BASELINE: &str = "baseline";
pub const BASELINE_DIRECT: &str = "baseline-direct";
/// Berth with its blobs in S3 (SeaweedFS on loopback, `--s3`).
pub const BERTH_S3: &str = "berth-s3";
pub const NGINX: &str = "nginx";
/// Berth with an auth file: anonymous pulls granted to anyone, and a user's token.
pub const BERTH_AUTH: &str = "berth-auth";
pub const MACHINE: &str = "machine";

// Metric keys (per subject).
pub const PUSH_MONO: &str = "push_monolithic_mibs";
pub const PUSH_CHUNKED: &str = "push_chunked_mibs";
pub const PULL_FIRST: &str = "pull_first_mibs";
pub const PULL_SINGLE: &str = "pull_single_mibs";
pub const PULL_PAR: &str = "pull_parallel_mibs";
pub const PULL_RANGE: &str = "pull_range_mibs";
pub const RSS_BLOB: &str = "rss_blob_mib";
pub const HEAD_RPS: &str = "head_blob_c16_rps";
pub const HEAD_P99: &str = "head_blob_c16_p99_ms";
pub const MPUSH_RPS: &str = "manifest_put_rps";
pub const TAGS_RPS: &str = "tags_list_rps";
pub const TAGS_P50: &str = "tags_list_p50_ms";
pub const BIG_PUSH: &str = "big_push_mibs";
pub const BIG_PULL: &str = "big_pull_mibs";
pub const BIG_RSS_PUSH: &str = "big_rss_push_mib";
pub const BIG_RSS_PULL: &str = "big_rss_pull_mib";
pub const SHA_OPENSSL: &str = "sha256_openssl_mibs";
pub const SHA_CRATE: &str = "sha256_sha2_crate_mibs";
pub const DISK_FSYNC: &str = "disk_write_fdatasync_mibs";
pub const DISK_FSYNC_BIG: &str = "disk_write_fdatasync_big_mibs";
pub const DISK_FSYNC_DIRECT: &str = "disk_write_fdatasync_direct_mibs";
pub const DISK_FSYNC_BIG_DIRECT: &str = "disk_write_fdatasync_big_direct_mibs";
pub const LOOPBACK: &str = "loopback_iperf3_mibs";
pub const S3_PUT: &str = "s3_server_multipart_put_mibs";
pub const S3_GET: &str = "s3_server_get_mibs";
pub const GC_LOAD_RATE: &str = "gc_load_blobs_per_s";
pub const GC_DRY_SECS: &str = "gc_dry_run_s";
pub const GC_APPLY_SECS: &str = "gc_apply_s";

pub const GET_CONC: [usize; 3] = [1, 16, 64];

/// Every figure of the request-rate workloads.
pub fn meta_keys() -> Vec<String> {
    let mut k: Vec<String> = GET_CONC
        .iter()
        .flat_map(|c| ["rps", "p50_ms", "p99_ms"].map(|w| get_key(*c, w)))
        .collect();
    k.extend([HEAD_RPS, HEAD_P99, MPUSH_RPS, TAGS_RPS, TAGS_P50].map(String::from));
    k
}

/// Alias resolve runs at these connection counts (Berth only).
pub const ALIAS_CONC: [usize; 2] = [16, 64];
pub const PROMOTE_RPS: &str = "promotions_rps";

pub fn alias_key(c: usize, what: &str) -> String {
    format!("alias_get_c{c}_{what}")
}

/// Every figure of the alias workloads.
pub fn alias_keys() -> Vec<String> {
    let mut k: Vec<String> = ALIAS_CONC
        .iter()
        .flat_map(|c| ["rps", "p99_ms"].map(|w| alias_key(*c, w)))
        .collect();
    k.push(PROMOTE_RPS.into());
    k
}

/// Manifest GET by tag with a Bearer token (on `BERTH_AUTH`).
pub fn bearer_key(c: usize, what: &str) -> String {
    format!("manifest_get_bearer_c{c}_{what}")
}

pub fn get_key(c: usize, what: &str) -> String {
    format!("manifest_get_c{c}_{what}")
}

#[derive(Default)]
pub struct Results {
    pub values: BTreeMap<(String, String), Vec<f64>>,
    pub failed: BTreeSet<(String, String)>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

impl Results {
    pub fn add(&mut self, subject: &str, key: &str, v: f64) {
        self.values
            .entry((subject.into(), key.into()))
            .or_default()
            .push(v);
    }

    pub fn fail(&mut self, subject: &str, key: &str, err: &anyhow::Error) {
        let msg = format!("{subject} {key}: {err:#}");
        eprintln!("ERROR {msg}");
        self.failed.insert((subject.into(), key.into()));
        self.errors.push(msg);
    }

    pub fn mark_failed(&mut self, subject: &str, key: &str) {
        self.failed.insert((subject.into(), key.into()));
    }

    pub fn median(&self, subject: &str, key: &str) -> Option<f64> {
        let v = self.values.get(&(subject.to_string(), key.to_string()))?;
        let mut v = v.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        (n > 0).then(|| {
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        })
    }

    fn failed(&self, subject: &str, key: &str) -> bool {
        self.failed
            .contains(&(subject.to_string(), key.to_string()))
    }

    fn cell(&self, subject: &str, key: &str) -> String {
        if self.failed(subject, key) {
            return "FAIL".into();
        }
        self.median(subject, key)
            .map(fmt)
            .unwrap_or_else(|| "—".into())
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut vals = serde_json::Map::new();
        for ((s, k), v) in &self.values {
            vals.insert(format!("{s}/{k}"), serde_json::json!(v));
        }
        serde_json::json!({"values": vals, "errors": self.errors, "notes": self.notes})
    }
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

enum Ceil {
    None,
    /// min(SHA-256 one core, the disk's fastest fdatasync'd write: the larger of
    /// the buffered and the direct-I/O figure under the given keys)
    ShaDisk([&'static str; 2]),
    Sha,
    Of(&'static str, String),
    /// The same latency measured on nginx: the floor this client and machine reach.
    Floor(&'static str, String),
    Key(&'static str),
}

#[derive(Clone, Copy, PartialEq)]
enum Target {
    None,
    PushFsync,
    PushNoFsync,
    Pull,
    /// Concurrent pulls: as much of the machine as nginx gets from it.
    PullScale,
    Rps3x,
    P99Under2,
    RssUnder64,
    RssUnder128,
}

struct Row {
    label: String,
    key: String,
    berth: &'static str,
    ceil: Ceil,
    target: Target,
}

fn row(
    label: impl Into<String>,
    key: impl Into<String>,
    berth: &'static str,
    ceil: Ceil,
    target: Target,
) -> Row {
    Row {
        label: label.into(),
        key: key.into(),
        berth,
        ceil,
        target,
    }
}

fn rows(chunk_mib: u64, parallel: u64, tags: usize, push_c: usize) -> Vec<Row> {
    use Target as T;
    let mut r = vec![
        row(
            "push monolithic, fsync (MiB/s)",
            PUSH_MONO,
            BERTH,
            Ceil::ShaDisk([DISK_FSYNC, DISK_FSYNC_DIRECT]),
            T::PushFsync,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, fsync (MiB/s)"),
            PUSH_CHUNKED,
            BERTH,
            Ceil::ShaDisk([DISK_FSYNC, DISK_FSYNC_DIRECT]),
            T::PushFsync,
        ),
        row(
            "push monolithic, berth --no-fsync (MiB/s)",
            PUSH_MONO,
            BERTH_NOFSYNC,
            Ceil::Sha,
            T::PushNoFsync,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, berth --no-fsync (MiB/s)"),
            PUSH_CHUNKED,
            BERTH_NOFSYNC,
            Ceil::Sha,
            T::PushNoFsync,
        ),
        row(
            "push monolithic, berth --direct-io (MiB/s)",
            PUSH_MONO,
            BERTH_DIRECT,
            Ceil::ShaDisk([DISK_FSYNC, DISK_FSYNC_DIRECT]),
            T::None,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, berth --direct-io (MiB/s)"),
            PUSH_CHUNKED,
            BERTH_DIRECT,
            Ceil::ShaDisk([DISK_FSYNC, DISK_FSYNC_DIRECT]),
            T::None,
        ),
        // The default configuration beside --direct-io, and each build beside
        // the baseline build (the share column: within 5% is >= 0.95).
        row(
            "push monolithic, default vs --direct-io (MiB/s)",
            PUSH_MONO,
            BERTH,
            Ceil::Of(BERTH_DIRECT, PUSH_MONO.into()),
            T::None,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, default vs --direct-io (MiB/s)"),
            PUSH_CHUNKED,
            BERTH,
            Ceil::Of(BERTH_DIRECT, PUSH_CHUNKED.into()),
            T::None,
        ),
        row(
            "push monolithic, this build vs baseline (MiB/s)",
            PUSH_MONO,
            BERTH,
            Ceil::Of(BASELINE, PUSH_MONO.into()),
            T::None,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, this build vs baseline (MiB/s)"),
            PUSH_CHUNKED,
            BERTH,
            Ceil::Of(BASELINE, PUSH_CHUNKED.into()),
            T::None,
        ),
        row(
            "push monolithic, --direct-io, this build vs baseline (MiB/s)",
            PUSH_MONO,
            BERTH_DIRECT,
            Ceil::Of(BASELINE_DIRECT, PUSH_MONO.into()),
            T::None,
        ),
        row(
            format!("push chunked {chunk_mib} MiB, --direct-io, this build vs baseline (MiB/s)"),
            PUSH_CHUNKED,
            BERTH_DIRECT,
            Ceil::Of(BASELINE_DIRECT, PUSH_CHUNKED.into()),
            T::None,
        ),
        row(
            "pull first after push, this build vs baseline (MiB/s)",
            PULL_FIRST,
            BERTH,
            Ceil::Of(BASELINE, PULL_FIRST.into()),
            T::None,
        ),
        row(
            "pull single stream, first pull after push (MiB/s)",
            PULL_FIRST,
            BERTH,
            Ceil::Of(NGINX, PULL_FIRST.into()),
            T::Pull,
        ),
        row(
            "pull single stream, first after push, berth --direct-io (MiB/s)",
            PULL_FIRST,
            BERTH_DIRECT,
            Ceil::Of(NGINX, PULL_FIRST.into()),
            T::None,
        ),
        row(
            "pull single stream, again (MiB/s)",
            PULL_SINGLE,
            BERTH,
            Ceil::Of(NGINX, PULL_SINGLE.into()),
            T::None,
        ),
        row(
            format!("pull {parallel} concurrent, total (MiB/s)"),
            PULL_PAR,
            BERTH,
            Ceil::Of(NGINX, PULL_PAR.into()),
            T::PullScale,
        ),
        row(
            format!("pull {parallel} Range parts of one blob (MiB/s)"),
            PULL_RANGE,
            BERTH,
            Ceil::Of(NGINX, PULL_RANGE.into()),
            T::None,
        ),
        row(
            "peak RSS during blob workloads (MiB)",
            RSS_BLOB,
            BERTH,
            Ceil::None,
            T::None,
        ),
    ];
    for c in GET_CONC {
        let (rt, pt) = if c == 16 {
            (T::Rps3x, T::P99Under2)
        } else {
            (T::None, T::None)
        };
        let ceil = Ceil::Of(NGINX, get_key(c, "rps"));
        r.push(row(
            format!("manifest GET by tag c={c} (req/s)"),
            get_key(c, "rps"),
            BERTH,
            ceil,
            rt,
        ));
        r.push(row(
            format!("manifest GET by tag c={c} p50 (ms)"),
            get_key(c, "p50_ms"),
            BERTH,
            Ceil::Floor(NGINX, get_key(c, "p50_ms")),
            T::None,
        ));
        r.push(row(
            format!("manifest GET by tag c={c} p99 (ms)"),
            get_key(c, "p99_ms"),
            BERTH,
            Ceil::Floor(NGINX, get_key(c, "p99_ms")),
            pt,
        ));
    }
    r.extend([
        row(
            "HEAD blob c=16 (req/s)",
            HEAD_RPS,
            BERTH,
            Ceil::Of(NGINX, HEAD_RPS.into()),
            T::None,
        ),
        row(
            "HEAD blob c=16 p99 (ms)",
            HEAD_P99,
            BERTH,
            Ceil::Floor(NGINX, HEAD_P99.into()),
            T::None,
        ),
        row(
            format!("manifest PUT, new tag each, c={push_c} (req/s)"),
            MPUSH_RPS,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            format!("tags list, {tags} tags, c=1 (req/s)"),
            TAGS_RPS,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            format!("tags list, {tags} tags, c=1 p50 (ms)"),
            TAGS_P50,
            BERTH,
            Ceil::None,
            T::None,
        ),
        // Alias resolve beside manifest GET by tag on Berth (the share column: within 10% is >= 0.9).
        row(
            "alias resolve c=16 (req/s)",
            alias_key(16, "rps"),
            BERTH,
            Ceil::Of(BERTH, get_key(16, "rps")),
            T::None,
        ),
        row(
            "alias resolve c=64 (req/s)",
            alias_key(64, "rps"),
            BERTH,
            Ceil::Of(BERTH, get_key(64, "rps")),
            T::None,
        ),
        row(
            "alias resolve c=16 p99 (ms)",
            alias_key(16, "p99_ms"),
            BERTH,
            Ceil::Of(BERTH, get_key(16, "p99_ms")),
            T::None,
        ),
        row(
            "alias resolve c=64 p99 (ms)",
            alias_key(64, "p99_ms"),
            BERTH,
            Ceil::Of(BERTH, get_key(64, "p99_ms")),
            T::None,
        ),
        // With an auth file: a Bearer token beside anonymous on the same server
        // (the share column: within 10% is >= 0.9), and anonymous beside open access.
        row(
            "auth on, anonymous manifest GET c=16 (req/s)",
            get_key(16, "rps"),
            BERTH_AUTH,
            Ceil::Of(BERTH, get_key(16, "rps")),
            T::None,
        ),
        row(
            "auth on, Bearer manifest GET c=16 (req/s)",
            bearer_key(16, "rps"),
            BERTH_AUTH,
            Ceil::Of(BERTH_AUTH, get_key(16, "rps")),
            T::None,
        ),
        row(
            "auth on, Bearer manifest GET c=64 (req/s)",
            bearer_key(64, "rps"),
            BERTH_AUTH,
            Ceil::Of(BERTH_AUTH, get_key(64, "rps")),
            T::None,
        ),
        row(
            "auth on, Bearer manifest GET c=16 p99 (ms)",
            bearer_key(16, "p99_ms"),
            BERTH_AUTH,
            Ceil::Of(BERTH_AUTH, get_key(16, "p99_ms")),
            T::None,
        ),
        row(
            "auth on, Bearer manifest GET c=64 p99 (ms)",
            bearer_key(64, "p99_ms"),
            BERTH_AUTH,
            Ceil::Of(BERTH_AUTH, get_key(64, "p99_ms")),
            T::None,
        ),
        row(
            "promotions, c=1 (req/s)",
            PROMOTE_RPS,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            "big: push monolithic, fsync (MiB/s)",
            BIG_PUSH,
            BERTH,
            Ceil::ShaDisk([DISK_FSYNC_BIG, DISK_FSYNC_BIG_DIRECT]),
            T::None,
        ),
        row(
            "big: pull single stream, first after push (MiB/s)",
            BIG_PULL,
            BERTH,
            Ceil::Of(NGINX, PULL_FIRST.into()),
            T::None,
        ),
        row(
            "big: peak RSS while pushing (MiB)",
            BIG_RSS_PUSH,
            BERTH,
            Ceil::None,
            T::RssUnder64,
        ),
        row(
            "big: peak RSS while pulling (MiB)",
            BIG_RSS_PULL,
            BERTH,
            Ceil::None,
            T::RssUnder64,
        ),
        row(
            "on S3: push monolithic, vs filesystem (MiB/s)",
            PUSH_MONO,
            BERTH_S3,
            Ceil::Of(BERTH, PUSH_MONO.into()),
            T::None,
        ),
        row(
            format!("on S3: push chunked {chunk_mib} MiB, vs filesystem (MiB/s)"),
            PUSH_CHUNKED,
            BERTH_S3,
            Ceil::Of(BERTH, PUSH_CHUNKED.into()),
            T::None,
        ),
        row(
            "on S3: pull first after push, vs filesystem (MiB/s)",
            PULL_FIRST,
            BERTH_S3,
            Ceil::Of(BERTH, PULL_FIRST.into()),
            T::None,
        ),
        row(
            "on S3: push monolithic, vs the S3 server alone (MiB/s)",
            PUSH_MONO,
            BERTH_S3,
            Ceil::Of(MACHINE, S3_PUT.into()),
            T::None,
        ),
        row(
            "on S3: pull first after push, vs the S3 server alone (MiB/s)",
            PULL_FIRST,
            BERTH_S3,
            Ceil::Of(MACHINE, S3_GET.into()),
            T::None,
        ),
        row(
            "ceiling: S3 server, multipart put, 16 MiB parts (MiB/s)",
            S3_PUT,
            "",
            Ceil::Key(S3_PUT),
            T::None,
        ),
        row(
            "ceiling: S3 server, one GET (MiB/s)",
            S3_GET,
            "",
            Ceil::Key(S3_GET),
            T::None,
        ),
        row(
            "on S3, big: push monolithic (MiB/s)",
            BIG_PUSH,
            BERTH_S3,
            Ceil::Of(BERTH, BIG_PUSH.into()),
            T::None,
        ),
        row(
            "on S3, big: pull single stream (MiB/s)",
            BIG_PULL,
            BERTH_S3,
            Ceil::Of(BERTH, BIG_PULL.into()),
            T::None,
        ),
        row(
            "on S3, big: peak RSS while pushing (MiB)",
            BIG_RSS_PUSH,
            BERTH_S3,
            Ceil::None,
            T::RssUnder128,
        ),
        row(
            "on S3, big: peak RSS while pulling (MiB)",
            BIG_RSS_PULL,
            BERTH_S3,
            Ceil::None,
            T::RssUnder128,
        ),
        row(
            "gc stage: blobs loaded per second, 16 connections",
            GC_LOAD_RATE,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            "gc stage: dry run (s)",
            GC_DRY_SECS,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            "gc stage: applied, sweeping half (s)",
            GC_APPLY_SECS,
            BERTH,
            Ceil::None,
            T::None,
        ),
        row(
            "ceiling: sha256 one core, openssl (MiB/s)",
            SHA_OPENSSL,
            "",
            Ceil::Key(SHA_OPENSSL),
            T::None,
        ),
        row(
            "ceiling: sha256 one core, sha2 crate (MiB/s)",
            SHA_CRATE,
            "",
            Ceil::Key(SHA_CRATE),
            T::None,
        ),
        row(
            "ceiling: disk write + fdatasync, dd (MiB/s)",
            DISK_FSYNC,
            "",
            Ceil::Key(DISK_FSYNC),
            T::None,
        ),
        row(
            "ceiling: disk write + fdatasync, dd oflag=direct (MiB/s)",
            DISK_FSYNC_DIRECT,
            "",
            Ceil::Key(DISK_FSYNC_DIRECT),
            T::None,
        ),
        row(
            "ceiling: disk write + fdatasync, big blob size (MiB/s)",
            DISK_FSYNC_BIG,
            "",
            Ceil::Key(DISK_FSYNC_BIG),
            T::None,
        ),
        row(
            "ceiling: disk write + fdatasync, big, oflag=direct (MiB/s)",
            DISK_FSYNC_BIG_DIRECT,
            "",
            Ceil::Key(DISK_FSYNC_BIG_DIRECT),
            T::None,
        ),
        row(
            "ceiling: loopback TCP, iperf3 (MiB/s)",
            LOOPBACK,
            "",
            Ceil::Key(LOOPBACK),
            T::None,
        ),
    ]);
    r
}

fn target_text(t: Target) -> &'static str {
    match t {
        Target::None => "",
        Target::PushFsync => "≥1.5× dist, ≥90% ceil",
        Target::PushNoFsync => "≥90% ceil",
        Target::Pull => "≥1× dist, ≥90% ceil",
        Target::PullScale => "≥90% ceil",
        Target::Rps3x => "≥3× dist",
        Target::P99Under2 => "<2 ms",
        Target::RssUnder64 => "<64 MiB",
        Target::RssUnder128 => "<128 MiB",
    }
}

impl Results {
    fn ceiling(&self, c: &Ceil) -> (Option<f64>, String) {
        match c {
            Ceil::None => (None, String::new()),
            Ceil::Sha => (self.median(MACHINE, SHA_OPENSSL), "sha256".into()),
            Ceil::ShaDisk(disks) => {
                let disk = disks
                    .iter()
                    .filter_map(|k| self.median(MACHINE, k))
                    .reduce(f64::max);
                let v = match (self.median(MACHINE, SHA_OPENSSL), disk) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    _ => None,
                };
                (v, "min(sha256,disk)".into())
            }
            Ceil::Of(s, k) | Ceil::Floor(s, k) => (self.median(s, k), s.to_string()),
            Ceil::Key(k) => (self.median(MACHINE, k), String::new()),
        }
    }

    /// The table, in Markdown (also readable as plain text).
    pub fn table(&self, chunk_mib: u64, parallel: u64, tags: usize, push_c: usize) -> String {
        let head = [
            "metric",
            "distribution",
            "berth",
            "berth/dist",
            "ceiling",
            "berth/ceiling",
            "target",
            "met",
        ];
        let mut lines: Vec<Vec<String>> = vec![head.iter().map(|s| s.to_string()).collect()];
        for r in rows(chunk_mib, parallel, tags, push_c) {
            let (ceil, cname) = self.ceiling(&r.ceil);
            if r.berth.is_empty() {
                let v = match ceil {
                    _ if self.failed(MACHINE, &r.key) => "FAIL".into(),
                    Some(c) => fmt(c),
                    None => continue, // not measured in this run
                };
                lines.push(vec![
                    r.label,
                    String::new(),
                    String::new(),
                    String::new(),
                    v,
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
                continue;
            }
            let d = self
                .median(DIST, &r.key)
                .filter(|_| !self.failed(DIST, &r.key));
            let b = self
                .median(r.berth, &r.key)
                .filter(|_| !self.failed(r.berth, &r.key));
            if d.is_none()
                && b.is_none()
                && !self.failed(DIST, &r.key)
                && !self.failed(r.berth, &r.key)
            {
                continue; // stage not run
            }
            let ratio = match (b, d) {
                (Some(b), Some(d)) if d > 0.0 => format!("{:.2}×", b / d),
                _ => "—".into(),
            };
            let ceil_cell = ceil
                .map(|c| format!("{} {cname}", fmt(c)))
                .unwrap_or_default();
            let floor = matches!(r.ceil, Ceil::Floor(..));
            let share = match (b, ceil) {
                (Some(b), Some(c)) if c > 0.0 && !floor => format!("{:.0}%", 100.0 * b / c),
                _ => String::new(),
            };
            let met = match eval(r.target, b, d, ceil) {
                _ if r.target == Target::None => String::new(),
                _ if self.failed(r.berth, &r.key) => "NO".into(),
                _ if b.is_none() => "—".into(),
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "?".into(),
            };
            lines.push(vec![
                r.label,
                self.cell(DIST, &r.key),
                self.cell(r.berth, &r.key),
                ratio,
                ceil_cell,
                share,
                target_text(r.target).into(),
                met,
            ]);
        }
        render(&lines)
    }
}

fn eval(t: Target, b: Option<f64>, d: Option<f64>, ceil: Option<f64>) -> Option<bool> {
    let b = b?;
    Some(match t {
        Target::None => return None,
        Target::PushFsync => b >= 1.5 * d? && b >= 0.9 * ceil?,
        Target::PushNoFsync => b >= 0.9 * ceil?,
        Target::Pull => b >= d? && b >= 0.9 * ceil?,
        Target::PullScale => b >= 0.9 * ceil?,
        Target::Rps3x => b >= 3.0 * d?,
        Target::P99Under2 => b < 2.0,
        Target::RssUnder64 => b < 64.0,
        Target::RssUnder128 => b < 128.0,
    })
}

fn render(lines: &[Vec<String>]) -> String {
    let n = lines[0].len();
    let w: Vec<usize> = (0..n)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (li, l) in lines.iter().enumerate() {
        out.push('|');
        for (i, c) in l.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                out.push_str(&format!(" {c}{} |", " ".repeat(pad)));
            } else {
                out.push_str(&format!(" {}{c} |", " ".repeat(pad)));
            }
        }
        out.push('\n');
        if li == 0 {
            out.push('|');
            for (i, wi) in w.iter().enumerate() {
                out.push_str(&if i == 0 {
                    format!(":{}|", "-".repeat(wi + 1))
                } else {
                    format!("{}:|", "-".repeat(wi + 1))
                });
            }
            out.push('\n');
        }
    }
    out
}
