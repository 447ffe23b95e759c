//! Berth vs CNCF distribution, side by side on loopback, with the machine's
//! ceilings measured in the same run. Not part of the test suite.
//!
//!     bash benches/setup.sh                       # once: docker-registry, nginx, iperf3
//!     cargo bench --bench registry                # full run (1 GiB blobs, 3 rounds)
//!     cargo bench --bench registry -- --quick     # ~1 minute smoke run
//!     cargo bench --bench registry -- --help
//!
//! See BENCHMARKS.md for what each figure means.

mod blob;
mod ceilings;
mod gc;
mod http;
mod load;
mod oci;
mod report;
mod servers;
mod workloads;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, ValueEnum};

use blob::BlobSource;
use report::{
    BASELINE, BASELINE_DIRECT, BERTH, BERTH_AUTH, BERTH_DIRECT, BERTH_NOFSYNC, BERTH_S3, DIST,
    MACHINE, NGINX, Results,
};
use servers::Server;
use workloads::{MIB, MetaObjects, Params, Pulls};

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Only {
    Both,
    Distribution,
    Berth,
}

/// Benchmark Berth against CNCF distribution (Debian docker-registry) on loopback.
#[derive(Parser)]
#[command(name = "registry-bench")]
struct Args {
    /// Rounds; each runs every workload on distribution, then on Berth (A B A B ...). Medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Blob size for push/pull workloads (e.g. 1GiB, 256MiB).
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    blob_size: u64,
    /// Chunk size for the chunked (PATCH) push.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    chunk_size: u64,
    /// Seconds each request-rate workload is measured (after a short warm-up).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Connections for the concurrent and Range pulls.
    #[arg(long, default_value_t = 8)]
    parallel: u64,
    /// Tags in the tags-list repository (set up once per registry, each on its own manifest).
    #[arg(long, default_value_t = 1000)]
    tags: usize,
    /// Manifests pushed per round, each under a new tag, for the manifest PUT rate.
    #[arg(long, default_value_t = 1000)]
    manifest_puts: usize,
    /// Connections pushing manifests.
    #[arg(long, default_value_t = 16)]
    push_concurrency: usize,
    /// Smoke run (~1 minute): 128 MiB blobs, 0.5 s rate tests, 250 manifest PUTs per round, unless given explicitly.
    #[arg(long)]
    quick: bool,
    /// Also run the big-blob stage (push and pull --big-size, peak RSS).
    #[arg(long)]
    big: bool,
    /// Run only the big-blob stage (and the ceilings it needs).
    #[arg(long)]
    big_only: bool,
    #[arg(long, default_value = "5GiB", value_parser = parse_size)]
    big_size: u64,
    /// Which registries to run.
    #[arg(long, value_enum, default_value = "both")]
    only: Only,
    /// Also run the garbage-collection stage on a fresh Berth holding this
    /// many blobs (e.g. 100000), half of them named by no manifest.
    #[arg(long, default_value_t = 0)]
    gc_blobs: usize,
    /// Run only the garbage-collection stage.
    #[arg(long, requires = "gc_blobs")]
    gc_only: bool,
    /// Also measure Berth with its blobs in S3: a SeaweedFS server on loopback
    /// (`scripts/s3-test-server.sh`, unless `BERTH_TEST_S3_ENDPOINT` names one),
    /// push and first pull beside the filesystem, and the big stage.
    #[arg(long)]
    s3: bool,
    /// Berth binary (default: the one cargo built for this bench, else target/release/berth).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// A second Berth binary (say, the build before a change), measured beside
    /// `--berth` in the same rounds: push and first pull, default flags and `--direct-io`.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Fail instead of skipping Berth when it cannot be started.
    #[arg(long)]
    require_berth: bool,
    #[arg(long, default_value = "/usr/bin/docker-registry")]
    distribution: PathBuf,
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx: PathBuf,
    /// Parent of the temporary work directory (data dirs, nginx root, dd file).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory afterwards.
    #[arg(long)]
    keep: bool,
    /// Client runtime worker threads.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Also write every per-round figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Passed by `cargo bench`. Without it (e.g. `cargo test --all-targets`,
    /// which also runs bench binaries) the bench does nothing.
    #[arg(long, hide = true)]
    bench: bool,
}

static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Seconds since the bench started (progress lines).
pub fn elapsed() -> f64 {
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let i = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..i].parse().map_err(|_| format!("bad size {s:?}"))?;
    let mul = match s[i..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        u => return Err(format!("bad unit {u:?} (use KiB, MiB, GiB)")),
    };
    Ok(n * mul)
}

fn main() {
    elapsed();
    let m = Args::command().get_matches();
    let mut args = Args::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    if !args.bench {
        println!("registry bench: skipped (run it with `cargo bench --bench registry`)");
        return;
    }
    let default = |id: &str| m.value_source(id) == Some(ValueSource::DefaultValue);
    if args.quick {
        if default("blob_size") {
            args.blob_size = 128 << 20;
        }
        if default("duration") {
            args.duration = 0.5;
        }
        if default("manifest_puts") {
            args.manifest_puts = 250;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(args)) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            std::process::exit(2);
        }
    }
}

fn berth_bin(args: &Args) -> PathBuf {
    if let Some(p) = &args.berth {
        return p.clone();
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_berth") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/berth")
}

async fn start_berth(
    args: &Args,
    dir: &std::path::Path,
    name: &str,
    extra: &[&str],
    res: &mut Results,
) -> Result<Option<Server>> {
    let bin = match name {
        BASELINE | BASELINE_DIRECT => args.baseline.clone().unwrap_or_default(),
        _ => berth_bin(args),
    };
    let r = if bin.exists() {
        servers::start_berth(&bin, dir, name, extra).await
    } else {
        Err(anyhow::anyhow!("no binary at {}", bin.display()))
    };
    match r {
        Ok(s) => {
            eprintln!("{name}: listening on {} (pid {})", s.addr, s.pid);
            Ok(Some(s))
        }
        Err(e) if !args.require_berth => {
            let note = format!("{name} skipped: {e:#}");
            eprintln!("WARNING {note}");
            res.notes.push(note);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

async fn run(args: Args) -> Result<i32> {
    blob::self_check();
    if args.blob_size < args.chunk_size || args.rounds == 0 {
        bail!("need --blob-size >= --chunk-size and --rounds >= 1");
    }
    let p = Params {
        chunk: args.chunk_size,
        parallel: args.parallel,
        duration: Duration::from_secs_f64(args.duration),
        tags: args.tags,
        manifest_puts: args.manifest_puts.max(1),
        push_concurrency: args.push_concurrency.max(1),
    };
    let parent = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)?;
    let work = tempfile::Builder::new()
        .prefix("berth-bench-")
        .tempdir_in(&parent)?;
    let wd = work.path().to_path_buf();
    eprintln!("work dir: {}", wd.display());
    let mut res = Results::default();
    let want_dist = args.only != Only::Berth;
    let want_berth = args.only != Only::Distribution;

    // Servers under test.
    let dist = if want_dist {
        let s = servers::start_distribution(&args.distribution, &wd.join("distribution")).await?;
        eprintln!("distribution: listening on {} (pid {})", s.addr, s.pid);
        Some(s)
    } else {
        None
    };
    // Variants of Berth's configuration, for the push figures only.
    let mut variants = Vec::new();
    let berth = if want_berth {
        let b = start_berth(&args, &wd.join("berth"), BERTH, &[], &mut res).await?;
        if b.is_some() && !args.big_only && !args.gc_only {
            let mut flavours = vec![
                (BERTH_NOFSYNC, &["--no-fsync"][..]),
                (BERTH_DIRECT, &["--direct-io"][..]),
            ];
            if args.baseline.is_some() {
                flavours.extend([(BASELINE, &[][..]), (BASELINE_DIRECT, &["--direct-io"][..])]);
            }
            for (name, flags) in flavours {
                if let Some(s) = start_berth(&args, &wd.join(name), name, flags, &mut res).await? {
                    variants.push((s, name));
                }
            }
        }
        b
    } else {
        None
    };
    let mut on_s3 = if want_berth && args.s3 && !args.gc_only {
        let cfg = servers::s3_config(&wd)?;
        match ceilings::s3_multipart(&cfg, args.blob_size).await {
            Ok((put, get)) => {
                ceiling(&mut res, report::S3_PUT, Ok(put));
                ceiling(&mut res, report::S3_GET, Ok(get));
            }
            Err(e) => res.fail(MACHINE, report::S3_PUT, &e),
        }
        let flags = ["--config", cfg.to_str().unwrap_or_default()];
        start_berth(&args, &wd.join(BERTH_S3), BERTH_S3, &flags, &mut res).await?
    } else {
        None
    };
    if !args.big_only
        && let Some(s) = on_s3.take()
    {
        variants.push((s, BERTH_S3));
    }
    let registries: Vec<(&Server, &str)> = [(dist.as_ref(), DIST), (berth.as_ref(), BERTH)]
        .into_iter()
        .filter_map(|(s, n)| s.map(|s| (s, n)))
        .collect();
    if registries.is_empty() {
        bail!("no registry to benchmark");
    }

    if !args.big_only && !args.gc_only {
        main_stage(&args, &p, &wd, &registries, &variants, &mut res).await?;
    }
    if args.big || args.big_only {
        let mut big: Vec<(&Server, &str)> = registries.clone();
        let s3 = on_s3.as_ref().or_else(|| {
            variants
                .iter()
                .find(|(_, n)| *n == BERTH_S3)
                .map(|(s, _)| s)
        });
        if let Some(s) = s3 {
            big.push((s, BERTH_S3));
        }
        big_stage(&args, &wd, &big, &mut res).await;
    }
    if args.gc_blobs > 0 && want_berth {
        let dir = wd.join("berth-gc");
        if let Some(s) = start_berth(&args, &dir, BERTH, &[], &mut res).await?
            && let Err(e) = gc::gc_stage(&s, BERTH, args.gc_blobs, &mut res).await
        {
            res.fail(BERTH, "gc stage", &e);
        }
    }

    drop(variants);
    drop(berth);
    drop(dist);
    if args.keep {
        eprintln!("kept work dir {}", work.keep().display());
    }

    println!();
    println!("{}", machine_line(&args));
    println!();
    print!(
        "{}",
        res.table(
            args.chunk_size >> 20,
            args.parallel,
            args.tags,
            args.push_concurrency
        )
    );
    for n in &res.notes {
        println!("note: {n}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&res.to_json())?)?;
    }
    if !res.errors.is_empty() {
        println!("\n{} workload(s) FAILED:", res.errors.len());
        for e in &res.errors {
            println!("  {e}");
        }
        return Ok(1);
    }
    Ok(0)
}

async fn main_stage(
    args: &Args,
    p: &Params,
    wd: &std::path::Path,
    registries: &[(&Server, &str)],
    variants: &[(Server, &str)],
    res: &mut Results,
) -> Result<()> {
    eprintln!(
        "hashing the {} MiB blob prefix once ...",
        args.blob_size >> 20
    );
    let src = BlobSource::new(args.blob_size);
    res.add(
        MACHINE,
        report::SHA_CRATE,
        src.size() as f64 / MIB / src.hash_time.as_secs_f64(),
    );

    // nginx: the same blob as a static file, and the manifest as a small file.
    let objs = MetaObjects::new();
    let www = wd.join("www");
    std::fs::create_dir_all(&www)?;
    let nginx_blob = src.blob("nginx");
    nginx_blob
        .write_to(&www.join("blob.bin"))
        .context("write nginx blob file")?;
    std::fs::write(www.join("manifest.json"), &objs.manifest)?;
    std::fs::write(www.join("layer.bin"), &objs.layer)?;
    let nginx = servers::start_nginx(&args.nginx, &wd.join("nginx"), &www).await?;

    // A registry that cannot take the tagged manifest or the tags repository
    // gets its request-rate figures marked FAIL (the blob workloads still run).
    let mut meta_ok = Vec::new();
    for (s, name) in registries {
        let r = workloads::meta_setup(s, &objs, p).await;
        if let Err(e) = &r {
            res.fail(name, "setup (manifest, tags repository)", e);
            for key in report::meta_keys() {
                res.mark_failed(name, &key);
            }
        }
        meta_ok.push(r.is_ok());
    }
    let auth = if registries.iter().any(|(_, n)| *n == BERTH) {
        match auth_setup(args, wd, &objs).await {
            Ok(a) => Some(a),
            Err(e) => {
                res.fail(BERTH_AUTH, "setup (auth file, manifest, token)", &e);
                None
            }
        }
    } else {
        None
    };
    let short = if args.quick { 1 } else { 3 };
    for round in 0..args.rounds {
        eprintln!("== round {}/{}", round + 1, args.rounds);
        for (i, (s, name)) in registries.iter().enumerate() {
            workloads::blob_round(s, name, &src, round, p, Pulls::All, res).await;
            if meta_ok[i] {
                workloads::meta_round(s, name, &objs, round, p, res).await;
                if *name == BERTH {
                    workloads::alias_round(s, name, p, res).await;
                    if let Some((s, token)) = &auth {
                        workloads::auth_round(s, BERTH_AUTH, &objs, token, p, res).await;
                    }
                }
            }
        }
        for (s, name) in variants {
            let pulls = if [BERTH_DIRECT, BASELINE, BASELINE_DIRECT, BERTH_S3].contains(name) {
                Pulls::First // what direct I/O costs the pull that follows a push
            } else {
                Pulls::None
            };
            workloads::blob_round(s, name, &src, round, p, pulls, res).await;
        }
        workloads::pull_set(nginx.addr, "/blob.bin", &nginx_blob, NGINX, p.parallel, res).await;
        let get = std::sync::Arc::new(load::Op::Get {
            path: "/manifest.json".into(),
            accept: None,
            len: objs.manifest.len() as u64,
            authorization: None,
        });
        let head = std::sync::Arc::new(load::Op::Head {
            path: "/layer.bin".into(),
            len: objs.layer.len() as u64,
        });
        workloads::load_set(nginx.addr, NGINX, get, head, p, res).await;
        machine_ceilings(args, wd, short, res).await;
    }
    Ok(())
}

/// A Berth with an auth file (user `bench` may pull and push, anyone may
/// pull), the manifest pushed while its access was still open, and a Bearer
/// token of `bench` for the meta repository.
async fn auth_setup(
    args: &Args,
    wd: &std::path::Path,
    objs: &MetaObjects,
) -> Result<(Server, String)> {
    use base64::Engine as _;
    let dir = wd.join(BERTH_AUTH);
    let bin = berth_bin(args);
    let open = servers::start_berth(&bin, &dir, BERTH_AUTH, &[]).await?;
    workloads::manifest_setup(&open, objs).await?;
    drop(open);
    let password = "bench-password";
    let hash = berth::auth::password::hash(password).map_err(anyhow::Error::msg)?;
    let file = dir.join("auth.toml");
    std::fs::write(
        &file,
        format!(
            "[users.bench]\npassword = \"{hash}\"\n\n[[grant]]\nto = [\"user:bench\"]\nrepos = \"**\"\nactions = [\"pull\", \"push\"]\n\n[[grant]]\nto = [\"anonymous\"]\nrepos = \"**\"\nactions = [\"pull\"]\n\n[token]\nlifetime_secs = 86400\n"
        ),
    )?;
    let file = file.to_string_lossy().into_owned();
    let srv = servers::start_berth(&bin, &dir, BERTH_AUTH, &["--auth", &file]).await?;
    eprintln!("{BERTH_AUTH}: listening on {} (pid {})", srv.addr, srv.pid);
    let mut c = http::Conn::connect(srv.addr).await?;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bench:{password}"));
    let path = format!(
        "/v2/token?service=berth&scope=repository:{}:pull",
        workloads::META_REPO
    );
    let r = c
        .send(http::req(
            hyper::Method::GET,
            &path,
            &[("authorization", format!("Basic {basic}"))],
            http::empty(),
        ))
        .await?;
    let r = http::expect(r, hyper::StatusCode::OK, "GET /v2/token").await?;
    let body: serde_json::Value = serde_json::from_slice(&http::collect(r).await?)?;
    let token = body["token"]
        .as_str()
        .context("no token in the token answer")?
        .to_string();
    Ok((srv, token))
}

async fn machine_ceilings(args: &Args, wd: &std::path::Path, secs: u64, res: &mut Results) {
    // dd writes as much as one push, so both see the same disk and page-cache behaviour.
    let dd_mib = (args.blob_size >> 20).max(1);
    let r = ceilings::sha256_openssl(secs).await;
    ceiling(res, report::SHA_OPENSSL, r);
    let r = ceilings::disk_write_fsync(wd, dd_mib, false).await;
    ceiling(res, report::DISK_FSYNC, r);
    let r = ceilings::disk_write_fsync(wd, dd_mib, true).await;
    ceiling(res, report::DISK_FSYNC_DIRECT, r);
    let r = ceilings::loopback_iperf3(secs).await;
    ceiling(res, report::LOOPBACK, r);
}

fn ceiling(res: &mut Results, key: &str, r: Result<f64>) {
    match r {
        Ok(v) => {
            eprintln!(
                "  {:>6.1}s {MACHINE:<14} {key:<28} {v:>10.2} MiB/s",
                elapsed()
            );
            res.add(MACHINE, key, v);
        }
        Err(e) => res.fail(MACHINE, key, &e),
    }
}

async fn big_stage(
    args: &Args,
    wd: &std::path::Path,
    registries: &[(&Server, &str)],
    res: &mut Results,
) {
    eprintln!(
        "== big stage: hashing the {} MiB blob prefix once ...",
        args.big_size >> 20
    );
    let src = BlobSource::new(args.big_size);
    if res.median(MACHINE, report::SHA_CRATE).is_none() {
        let mibs = src.size() as f64 / MIB / src.hash_time.as_secs_f64();
        res.add(MACHINE, report::SHA_CRATE, mibs);
    }
    for (s, name) in registries {
        workloads::big_round(s, name, &src, 0, res).await;
    }
    if res.median(MACHINE, report::SHA_OPENSSL).is_none() {
        let r = ceilings::sha256_openssl(3).await;
        ceiling(res, report::SHA_OPENSSL, r);
    }
    let r = ceilings::disk_write_fsync(wd, (args.big_size >> 20).max(1), false).await;
    ceiling(res, report::DISK_FSYNC_BIG, r);
    let r = ceilings::disk_write_fsync(wd, (args.big_size >> 20).max(1), true).await;
    ceiling(res, report::DISK_FSYNC_BIG_DIRECT, r);
}

fn machine_line(args: &Args) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| (kib + (1 << 19)) >> 20)
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut line = format!(
        "machine: {cpu}, {cores} cores, {mem} GiB RAM, Linux {}; client threads {}",
        kernel.trim(),
        args.client_threads
    );
    if !args.big_only {
        line += &format!(
            "; blob {} MiB, chunk {} MiB, {} round(s), {} s per rate test",
            args.blob_size >> 20,
            args.chunk_size >> 20,
            args.rounds,
            args.duration
        );
    }
    if args.big || args.big_only {
        line += &format!("; big blob {} MiB", args.big_size >> 20);
    }
    line + "; medians over rounds"
}
