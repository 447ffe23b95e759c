//! The machine's ceilings, measured with standard tools in the same run:
//! SHA-256 on one core (openssl), sequential write + fdatasync (dd), loopback
//! TCP (iperf3). All figures in MiB/s.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

const MIB: f64 = 1024.0 * 1024.0;

async fn output(cmd: &mut Command, what: &str) -> Result<(String, String)> {
    let out = cmd
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("run {what} (run benches/setup.sh)"))?;
    let (so, se) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        bail!("{what} failed ({}): {se}{so}", out.status);
    }
    Ok((so, se))
}

/// `openssl speed -mr -evp sha256 -bytes 1048576 -seconds S` (one process, one core).
pub async fn sha256_openssl(seconds: u64) -> Result<f64> {
    let (so, _) = output(
        Command::new("openssl").args([
            "speed",
            "-mr",
            "-evp",
            "sha256",
            "-bytes",
            "1048576",
            "-seconds",
            &seconds.to_string(),
        ]),
        "openssl speed",
    )
    .await?;
    // Machine-readable result line: +F:<n>:sha256:<bytes per second>
    let line = so
        .lines()
        .find(|l| l.starts_with("+F:"))
        .context("openssl speed: no +F: line")?;
    let bps: f64 = line
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .context("openssl speed: bad figure")?;
    Ok(bps / MIB)
}

/// `dd if=/dev/zero of=DIR/dd.bin bs=1M count=N conv=fdatasync`, on the filesystem
/// the registries use; with `direct`, also `oflag=direct` (bypassing the page cache,
/// as Berth writes uploads).
pub async fn disk_write_fsync(dir: &Path, mib: u64, direct: bool) -> Result<f64> {
    let file = dir.join("dd.bin");
    let res = output(
        Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", file.display()))
            .args([
                "bs=1M".to_string(),
                format!("count={mib}"),
                "conv=fdatasync".to_string(),
            ])
            .args(direct.then_some("oflag=direct")),
        "dd",
    )
    .await;
    let _ = std::fs::remove_file(&file);
    let (_, se) = res?;
    // "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 4.38 s, 245 MB/s"
    let line = se
        .lines()
        .find(|l| l.contains(" copied, "))
        .context("dd: no summary line")?;
    let bytes: f64 = line
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .context("dd: bytes")?;
    let secs: f64 = line
        .split(" copied, ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .map(|s| s.replace(',', "."))
        .and_then(|s| s.parse().ok())
        .context("dd: seconds")?;
    Ok(bytes / secs / MIB)
}

/// iperf3 server (one-off) and client over 127.0.0.1 for `seconds`.
pub async fn loopback_iperf3(seconds: u64) -> Result<f64> {
    let port = TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .to_string();
    let mut server = Command::new("iperf3")
        .args(["-s", "-1", "-B", "127.0.0.1", "-p", &port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawn iperf3 (run benches/setup.sh)")?;
    let mut last = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        match output(
            Command::new("iperf3").args([
                "-c",
                "127.0.0.1",
                "-p",
                &port,
                "-t",
                &seconds.to_string(),
                "-J",
            ]),
            "iperf3 client",
        )
        .await
        {
            Ok((so, _)) => {
                let v: serde_json::Value = serde_json::from_str(&so).context("iperf3 JSON")?;
                let bps = v["end"]["sum_received"]["bits_per_second"]
                    .as_f64()
                    .context("iperf3: no sum_received")?;
                let _ = server.wait().await;
                return Ok(bps / 8.0 / MIB);
            }
            Err(e) => last = Some(e),
        }
    }
    let _ = server.kill().await;
    Err(last.unwrap())
}

/// The object store's own speed, with no registry in between: `size` bytes
/// sent as a multipart upload in 16 MiB parts, one in flight (as Berth sends
/// them), then read back in one GET. Returns (put, get) in MiB/s.
pub async fn s3_multipart(config: &Path, size: u64) -> Result<(f64, f64)> {
    #[derive(serde::Deserialize)]
    struct File {
        s3: berth::store::s3::S3Settings,
    }
    let file: File = toml::from_str(&std::fs::read_to_string(config)?)?;
    let s3 = file.s3;
    let client = s3.client().await;
    let key = "ceiling/blob";
    let part: u64 = 16 << 20;
    let bytes = bytes::Bytes::from(
        (0..part as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>(),
    );
    let t = std::time::Instant::now();
    let up = client
        .create_multipart_upload()
        .bucket(&s3.bucket)
        .key(key)
        .send()
        .await?;
    let id = up.upload_id().context("no upload id")?.to_string();
    let mut parts = Vec::new();
    let mut sent = 0;
    while sent < size {
        let len = part.min(size - sent);
        let n = parts.len() as i32 + 1;
        let out = client
            .upload_part()
            .bucket(&s3.bucket)
            .key(key)
            .upload_id(&id)
            .part_number(n)
            .content_length(len as i64)
            .body(bytes.slice(..len as usize).into())
            .send()
            .await?;
        parts.push(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(n)
                .e_tag(out.e_tag().unwrap_or_default())
                .build(),
        );
        sent += len;
    }
    client
        .complete_multipart_upload()
        .bucket(&s3.bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;
    let put = size as f64 / MIB / t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut body = client
        .get_object()
        .bucket(&s3.bucket)
        .key(key)
        .send()
        .await?
        .body;
    let mut got = 0u64;
    while let Some(chunk) = body.next().await {
        got += chunk?.len() as u64;
    }
    anyhow::ensure!(got == size, "read back {got} of {size} bytes");
    let get = size as f64 / MIB / t.elapsed().as_secs_f64();
    client
        .delete_object()
        .bucket(&s3.bucket)
        .key(key)
        .send()
        .await?;
    Ok((put, get))
}
