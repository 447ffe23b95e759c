//! TLS: HTTPS with HTTP/2 by ALPN, plain HTTP refused on the TLS port, a
//! renewed certificate served after SIGHUP (and a bad one refused with the old
//! one kept), a silent TLS connection closed at the client timeout, and a
//! non-loopback address refused without TLS or authentication.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Certificate, Client, StatusCode};
use tokio::io::AsyncReadExt as _;

use crate::common::TestServer;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .stdout(Stdio::null())
        .output()
        .expect("openssl (run scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate it issued for 127.0.0.1 (`openssl`, installed by the
/// test script): (CA certificate, server certificate, server key).
fn issued(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |ext: &str| dir.join(format!("{name}.{ext}"));
    let s = |ext: &str| p(ext).to_str().unwrap().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let ca_subj = format!("/CN={name} CA");
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-days", "2", "-subj", &ca_subj]);
    let (ca_key, ca_crt) = (s("ca.key"), s("ca.crt"));
    args.extend(["-keyout", &ca_key, "-out", &ca_crt]);
    openssl(&args);
    let (key, csr, crt, ext) = (s("key"), s("csr"), s("crt"), s("ext"));
    std::fs::write(
        p("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-subj", "/CN=berth", "-keyout", &key, "-out", &csr]);
    openssl(&args);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &ext,
        "-out",
        &crt,
    ]);
    (p("ca.crt"), p("crt"), p("key"))
}

fn trusting(cert: &Path) -> Client {
    let pem = std::fs::read(cert).unwrap();
    Client::builder()
        .tls_certs_only([Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn https_with_h2_and_a_certificate_renewed_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issued(dir.path(), "first");
    let live_cert = dir.path().join("tls.crt");
    let live_key = dir.path().join("tls.key");
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let srv = TestServer::start_with(&[
        "--tls-cert",
        live_cert.to_str().unwrap(),
        "--tls-key",
        live_key.to_str().unwrap(),
        "--client-timeout-secs",
        "2",
    ]);
    let https = format!("https://{}", srv.addr);
    let first = trusting(&ca);
    let resp = first.get(format!("{https}/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // HTTP/2 is offered by ALPN (this client speaks HTTP/1.1 only).
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &srv.addr,
            "-alpn",
            "h2,http/1.1",
            "-CAfile",
        ])
        .arg(&ca)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ALPN protocol: h2"), "{text}");
    assert!(text.contains("Verify return code: 0"), "{text}");
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        crate::client()
            .get(format!("http://{}/v2/", srv.addr))
            .send()
            .await
            .is_err()
    );

    // A key that does not fit: refused on SIGHUP, the certificate in force stays.
    let (second_ca, second_cert, second_key) = issued(dir.path(), "second");
    std::fs::copy(&second_cert, &live_cert).unwrap();
    let hup = || {
        Command::new("kill")
            .arg("-HUP")
            .arg(srv.pid().to_string())
            .status()
            .unwrap();
    };
    hup();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        trusting(&ca)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_ok()
    );
    // The whole renewed pair: served to new connections.
    std::fs::copy(&second_key, &live_key).unwrap();
    hup();
    let second = trusting(&second_ca);
    let mut served = false;
    for _ in 0..50 {
        if second.get(format!("{https}/v2/")).send().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the renewed certificate is served");
    assert!(
        trusting(&ca)
            .get(format!("{https}/v2/"))
            .send()
            .await
            .is_err(),
        "the old one is not"
    );

    // A client that opens a connection and never starts the handshake is closed.
    let mut silent = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(8), silent.read(&mut buf)).await;
    assert!(
        matches!(n, Ok(Ok(0)) | Ok(Err(_))),
        "closed, not left open: {n:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[test]
fn a_network_address_needs_tls_and_auth_or_an_insecure_setting() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--addr", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--tls-cert") && err.contains("--insecure-plain-http"),
        "{err}"
    );
    let out = run(&["--insecure-plain-http"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--auth") && err.contains("--insecure-open-access"),
        "{err}"
    );
}
