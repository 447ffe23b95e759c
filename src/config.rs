//! Server configuration: defaults, then a TOML file, then environment variables and
//! flags (clap reads both), each overriding the one before.

use std::net::SocketAddr;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::registry::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How upload bytes are written to the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum UploadIoMode {
    /// Through the page cache for the first 64 MiB of an upload, around it past
    /// them and for appends declared at least that long.
    Auto,
    /// Around the page cache (`O_DIRECT`) wherever the filesystem allows it.
    Direct,
    /// Through the page cache.
    Buffered,
}

/// `berth serve` flags. Every flag also reads a `BERTH_*` environment variable.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000].
    #[arg(long, env = "BERTH_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Directory for the metadata database and blobs [default: ./berth-data].
    #[arg(long, env = "BERTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format [default: text].
    #[arg(long, env = "BERTH_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Skip fsync on commits: faster, but a power loss can lose recent pushes.
    #[arg(long, env = "BERTH_NO_FSYNC")]
    pub no_fsync: bool,
    /// How upload bytes are written: `auto` keeps small uploads in the page cache
    /// (fast first pull) and writes large ones with direct I/O (fast push)
    /// [default: auto].
    #[arg(long, env = "BERTH_UPLOAD_IO", value_enum)]
    pub upload_io: Option<UploadIoMode>,
    /// Shorthand for `--upload-io direct`.
    #[arg(long, env = "BERTH_DIRECT_IO", conflicts_with = "upload_io")]
    pub direct_io: bool,
    /// Largest manifest accepted, in bytes [default: 4194304].
    #[arg(long, env = "BERTH_MAX_MANIFEST_BYTES")]
    pub max_manifest_bytes: Option<u64>,
    /// Smallest upload chunk clients are asked to send (`OCI-Chunk-Min-Length`), in
    /// bytes; advertised, not enforced; 0 for none [default: 0].
    #[arg(long, env = "BERTH_CHUNK_MIN_LENGTH")]
    pub chunk_min_length: Option<u64>,
    /// Seconds an upload session may stay idle before it expires [default: 86400].
    #[arg(long, env = "BERTH_UPLOAD_TTL_SECS")]
    pub upload_ttl_secs: Option<u64>,
    /// Seconds between online scrubs (every stored blob re-read and hashed, those
    /// that fail set aside), the first one that long after start; 0 for none
    /// [default: 0].
    #[arg(long, env = "BERTH_SCRUB_INTERVAL_SECS")]
    pub scrub_interval_secs: Option<u64>,
    /// How fast an online scrub reads, in MiB/s, so that clients keep the disk
    /// [default: 64].
    #[arg(long, env = "BERTH_SCRUB_MAX_MIB_PER_SEC")]
    pub scrub_max_mib_per_sec: Option<NonZeroU64>,
    /// Seconds between online garbage collections (applied); 0 for none [default: 0].
    #[arg(long, env = "BERTH_GC_INTERVAL_SECS")]
    pub gc_interval_secs: Option<u64>,
    /// Untagged manifests garbage collection keeps per repository, newest
    /// first [default: all of them].
    #[arg(long, env = "BERTH_GC_KEEP_UNTAGGED")]
    pub gc_keep_untagged: Option<usize>,
    /// Seconds a blob or link is safe from garbage collection after it was
    /// pushed, mounted or named by a manifest [default: 3600].
    #[arg(long, env = "BERTH_GC_GRACE_SECS")]
    pub gc_grace_secs: Option<u64>,
    /// Seconds after a tag moved away from a manifest during which garbage
    /// collection still keeps it [default: 2592000, 30 days].
    #[arg(long, env = "BERTH_GC_TAG_WINDOW_SECS")]
    pub gc_tag_window_secs: Option<u64>,
    /// Most threads doing file I/O at once; further reads and writes wait their turn [default: 512].
    #[arg(long, env = "BERTH_IO_THREADS")]
    pub io_threads: Option<NonZeroUsize>,
    /// Seconds a client may go quiet before its connection is closed: over a
    /// request head, between requests, or between the bytes of a body; 0 for
    /// no limit [default: 60].
    #[arg(long, env = "BERTH_CLIENT_TIMEOUT_SECS")]
    pub client_timeout_secs: Option<u64>,
    /// Most connections open at once from one client address; further ones are
    /// closed at accept [default: 256].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<NonZeroUsize>,
    /// Most connections open at once in all [default: 8192].
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    pub max_connections: Option<NonZeroUsize>,
    /// Most upload sessions one identity (or one anonymous client address) may
    /// have open at once [default: 128].
    #[arg(long, env = "BERTH_MAX_UPLOADS_PER_IDENTITY")]
    pub max_uploads_per_identity: Option<NonZeroUsize>,
    /// Promotion policy (TOML): protected aliases, immutable tags, stages, gates,
    /// webhooks. Reloaded on SIGHUP and replaced by `PUT /api/v1/policy`
    /// [default: DATA_DIR/policy.toml, if present; none: every tag is plain].
    #[arg(long, env = "BERTH_POLICY")]
    pub policy: Option<PathBuf>,
    /// The registry's signing key (cosign format, ECDSA P-256; an encrypted one is
    /// opened with BERTH_SIGNING_KEY_PASSWORD) [default: DATA_DIR/signing-key.pem,
    /// made at first start].
    #[arg(long, env = "BERTH_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// Also store attestations under cosign's legacy `sha256-<hex>.att` tags.
    #[arg(long, env = "BERTH_LEGACY_ATTESTATION_TAGS")]
    pub legacy_attestation_tags: bool,
    /// The CloudEvents `source` of events [default: urn:berth:<host name>].
    #[arg(long, env = "BERTH_EVENT_SOURCE")]
    pub event_source: Option<String>,
    /// Auth file (TOML): users, groups, grants, token settings. Reloaded on
    /// SIGHUP [default: none: anyone may do anything, loopback only].
    #[arg(long, env = "BERTH_AUTH")]
    pub auth: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, the server speaks HTTPS.
    /// Reloaded on SIGHUP.
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve a non-loopback address over plain HTTP: credentials and tokens
    /// cross the network readable by anyone on the path.
    #[arg(long, env = "BERTH_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,
    /// Serve a non-loopback address without an auth file: anyone who reaches
    /// the port may push, move tags and delete.
    #[arg(long, env = "BERTH_INSECURE_OPEN_ACCESS")]
    pub insecure_open_access: bool,
}

/// The TOML file: the same settings as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    fsync: Option<bool>,
    direct_io: Option<bool>,
    upload_io: Option<UploadIoMode>,
    max_manifest_bytes: Option<u64>,
    chunk_min_length: Option<u64>,
    upload_ttl_secs: Option<u64>,
    scrub_interval_secs: Option<u64>,
    scrub_max_mib_per_sec: Option<NonZeroU64>,
    gc_interval_secs: Option<u64>,
    gc_keep_untagged: Option<usize>,
    gc_grace_secs: Option<u64>,
    gc_tag_window_secs: Option<u64>,
    io_threads: Option<NonZeroUsize>,
    client_timeout_secs: Option<u64>,
    max_connections_per_address: Option<NonZeroUsize>,
    max_connections: Option<NonZeroUsize>,
    max_uploads_per_identity: Option<NonZeroUsize>,
    policy: Option<PathBuf>,
    signing_key: Option<PathBuf>,
    legacy_attestation_tags: Option<bool>,
    event_source: Option<String>,
    auth: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_plain_http: Option<bool>,
    insecure_open_access: Option<bool>,
    /// Blobs in S3-compatible object storage instead of under the data directory.
    #[cfg(feature = "s3")]
    s3: Option<crate::store::s3::S3Settings>,
    #[cfg(not(feature = "s3"))]
    s3: Option<toml::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// tokio's own default for its blocking pool.
const DEFAULT_IO_THREADS: NonZeroUsize = NonZeroUsize::new(512).unwrap();
const DEFAULT_SCRUB_MIB_PER_SEC: u64 = 64;

/// nginx's for request heads and bodies.
const DEFAULT_CLIENT_TIMEOUT_SECS: u64 = 60;

/// Behind one address there may be a NAT of many machines, so the share per
/// address is generous; the total stays well below the descriptor limit the
/// server raises itself to.
const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: NonZeroUsize = NonZeroUsize::new(256).unwrap();
const DEFAULT_MAX_CONNECTIONS: NonZeroUsize = NonZeroUsize::new(8192).unwrap();

/// How many connections may be open.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub per_address: usize,
    pub total: usize,
}

/// The resolved configuration of a server.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub fsync: bool,
    /// How upload bytes are written.
    pub upload_io: UploadIoMode,
    /// How often an online scrub runs (`None`: never), and how fast it reads.
    pub scrub_interval: Option<Duration>,
    pub scrub_max_bytes_per_sec: u64,
    /// What garbage collection keeps (its `apply` is off: a request or the
    /// schedule turns it on), and how often it runs online (`None`: never).
    pub gc: crate::registry::GcOptions,
    pub gc_interval: Option<Duration>,
    /// Most threads of the runtime's blocking pool, where file I/O runs.
    pub io_threads: NonZeroUsize,
    /// How long a client may go quiet (over a request head, between requests,
    /// between body bytes) before its connection is closed; `None` for ever.
    pub client_timeout: Option<Duration>,
    pub connections: ConnectionLimits,
    pub limits: Limits,
    /// The policy file (given, or the default in the data directory).
    pub policy: PathBuf,
    /// The registry's signing key file (given, or the default in the data directory).
    pub signing_key: PathBuf,
    /// Whether `signing_key` was given (a missing given key is an error, not made).
    pub signing_key_given: bool,
    pub legacy_attestation_tags: bool,
    pub event_source: String,
    /// The auth file; `None`: open access.
    pub auth: Option<PathBuf>,
    /// The HMAC key of registry tokens, made at first start if missing.
    pub token_secret: PathBuf,
    pub tls: Option<TlsFiles>,
    pub insecure_plain_http: bool,
    pub insecure_open_access: bool,
    /// Where blobs live when not under `data_dir` (the metadata stays there).
    #[cfg(feature = "s3")]
    pub s3: Option<crate::store::s3::S3Settings>,
}

/// Where the server's certificate chain and key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Config {
    /// Refuses to expose a registry beyond this machine without TLS or
    /// without authentication, unless a setting named insecure allows it.
    pub fn refuse_insecure(&self) -> Result<(), ConfigError> {
        if self.addr.ip().is_loopback() {
            return Ok(());
        }
        if self.tls.is_none() && !self.insecure_plain_http {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve {} over plain HTTP: give --tls-cert and --tls-key (or, to accept that \
                 passwords and tokens cross the network in the clear, --insecure-plain-http)",
                self.addr
            )));
        }
        if self.auth.is_none() && !self.insecure_open_access {
            return Err(ConfigError::Invalid(format!(
                "refusing to serve {} without authentication: give --auth FILE (or, to let anyone who \
                 reaches the port push and delete, --insecure-open-access)",
                self.addr
            )));
        }
        Ok(())
    }
}

/// `urn:berth:<host name>`, the default CloudEvents source.
fn default_event_source() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        .collect();
    format!(
        "urn:berth:{}",
        if host.is_empty() { "registry" } else { &host }
    )
}

impl Config {
    pub fn resolve(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let defaults = Limits::default();
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("berth-data"));
        let signing_key = args.signing_key.clone().or(file.signing_key);
        let tls = match (
            args.tls_cert.clone().or(file.tls_cert),
            args.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "tls_cert and tls_key go together: give both or neither".into(),
                ));
            }
        };
        #[cfg(feature = "s3")]
        if let Some(s3) = &file.s3 {
            s3.validate().map_err(ConfigError::Invalid)?;
        }
        #[cfg(not(feature = "s3"))]
        if file.s3.is_some() {
            return Err(ConfigError::Invalid(
                "[s3] is set, but this berth was built without the `s3` feature".into(),
            ));
        }
        Ok(Config {
            #[cfg(feature = "s3")]
            s3: file.s3,
            auth: args.auth.clone().or(file.auth),
            token_secret: data_dir.join("token-secret"),
            tls,
            insecure_plain_http: args.insecure_plain_http
                || file.insecure_plain_http.unwrap_or(false),
            insecure_open_access: args.insecure_open_access
                || file.insecure_open_access.unwrap_or(false),
            policy: args
                .policy
                .clone()
                .or(file.policy)
                .unwrap_or_else(|| data_dir.join("policy.toml")),
            signing_key_given: signing_key.is_some(),
            signing_key: signing_key.unwrap_or_else(|| data_dir.join("signing-key.pem")),
            legacy_attestation_tags: args.legacy_attestation_tags
                || file.legacy_attestation_tags.unwrap_or(false),
            event_source: args
                .event_source
                .clone()
                .or(file.event_source)
                .unwrap_or_else(default_event_source),
            addr: args
                .addr
                .or(file.addr)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 5000))),
            data_dir,
            log_format: args
                .log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Text),
            fsync: !args.no_fsync && file.fsync.unwrap_or(true),
            upload_io: match (args.direct_io, args.upload_io) {
                (true, _) => UploadIoMode::Direct,
                (false, Some(mode)) => mode,
                (false, None) => file.upload_io.unwrap_or(match file.direct_io {
                    Some(true) => UploadIoMode::Direct,
                    _ => UploadIoMode::Auto,
                }),
            },
            scrub_interval: match args
                .scrub_interval_secs
                .or(file.scrub_interval_secs)
                .unwrap_or(0)
            {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            scrub_max_bytes_per_sec: args
                .scrub_max_mib_per_sec
                .or(file.scrub_max_mib_per_sec)
                .map_or(DEFAULT_SCRUB_MIB_PER_SEC, NonZeroU64::get)
                .saturating_mul(1 << 20),
            gc: {
                let defaults = crate::registry::GcOptions::default();
                crate::registry::GcOptions {
                    apply: false,
                    keep_untagged: args.gc_keep_untagged.or(file.gc_keep_untagged),
                    grace: args
                        .gc_grace_secs
                        .or(file.gc_grace_secs)
                        .map_or(defaults.grace, Duration::from_secs),
                    tag_window: args
                        .gc_tag_window_secs
                        .or(file.gc_tag_window_secs)
                        .map_or(defaults.tag_window, Duration::from_secs),
                }
            },
            gc_interval: match args.gc_interval_secs.or(file.gc_interval_secs).unwrap_or(0) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            io_threads: args
                .io_threads
                .or(file.io_threads)
                .unwrap_or(DEFAULT_IO_THREADS),
            client_timeout: match args
                .client_timeout_secs
                .or(file.client_timeout_secs)
                .unwrap_or(DEFAULT_CLIENT_TIMEOUT_SECS)
            {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
            connections: ConnectionLimits {
                per_address: args
                    .max_connections_per_address
                    .or(file.max_connections_per_address)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)
                    .get(),
                total: args
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                    .get(),
            },
            limits: Limits {
                max_manifest_bytes: args
                    .max_manifest_bytes
                    .or(file.max_manifest_bytes)
                    .unwrap_or(defaults.max_manifest_bytes),
                chunk_min_length: args
                    .chunk_min_length
                    .or(file.chunk_min_length)
                    .unwrap_or(defaults.chunk_min_length),
                upload_ttl_secs: args
                    .upload_ttl_secs
                    .or(file.upload_ttl_secs)
                    .unwrap_or(defaults.upload_ttl_secs),
                max_uploads_per_identity: args
                    .max_uploads_per_identity
                    .or(file.max_uploads_per_identity)
                    .map_or(defaults.max_uploads_per_identity, NonZeroUsize::get),
                ..defaults
            },
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_then_flags() {
        let c = Config::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:5000");
        assert_eq!(c.data_dir, PathBuf::from("berth-data"));
        assert!(c.fsync);
        assert_eq!(c.upload_io, UploadIoMode::Auto);
        assert_eq!(c.io_threads.get(), 512);
        assert_eq!(c.client_timeout, Some(Duration::from_secs(60)));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.toml");
        std::fs::write(
            &path,
            "addr = \"0.0.0.0:6000\"\nfsync = false\ndirect_io = true\nmax_manifest_bytes = 10\nio_threads = 8\nclient_timeout_secs = 0\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            max_manifest_bytes: Some(20),
            ..Default::default()
        };
        let c = Config::resolve(&args).unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:6000");
        assert!(!c.fsync);
        assert_eq!(c.upload_io, UploadIoMode::Direct);
        assert_eq!(c.limits.max_manifest_bytes, 20);
        assert_eq!(c.io_threads.get(), 8);
        assert_eq!(c.client_timeout, None);

        // Beyond loopback, only with TLS and authentication, or said to be insecure.
        let e = c.refuse_insecure().unwrap_err().to_string();
        assert!(
            e.contains("--tls-cert") && e.contains("--insecure-plain-http"),
            "{e}"
        );
        let mut c2 = c.clone();
        c2.insecure_plain_http = true;
        let e = c2.refuse_insecure().unwrap_err().to_string();
        assert!(
            e.contains("--auth") && e.contains("--insecure-open-access"),
            "{e}"
        );
        c2.insecure_open_access = true;
        assert!(c2.refuse_insecure().is_ok());
        c2.addr = "127.0.0.1:1".parse().unwrap();
        c2.insecure_plain_http = false;
        c2.insecure_open_access = false;
        assert!(c2.refuse_insecure().is_ok(), "loopback");
        c2.addr = "[::1]:1".parse().unwrap();
        assert!(c2.refuse_insecure().is_ok(), "loopback v6");

        std::fs::write(&path, "adress = \"typo\"\n").unwrap();
        assert!(matches!(
            Config::resolve(&args),
            Err(ConfigError::Parse { .. })
        ));
    }
}
