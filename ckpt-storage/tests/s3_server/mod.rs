//! The local S3 test server of this crate's S3 tests (`s3_conformance`, `s3_credentials`): its
//! endpoint, bucket and region from the environment `cargo xtask test` sets, the loopback
//! check every address a test talks to passes, and fresh object prefixes.

use std::sync::atomic::{AtomicUsize, Ordering};

pub const HOW_TO_RUN: &str = "the S3 tests need a local S3-compatible server: run them with \
`cargo xtask test` (or `cargo xtask ci`), which install and start moto on 127.0.0.1; or start one \
with `cargo xtask s3-server` and export the variables it prints; set CKPT_SKIP_S3=1 to skip them \
explicitly";

/// The test server's endpoint, bucket and region; `None` (skip) only with `CKPT_SKIP_S3=1`.
pub fn server() -> Option<(String, String, String)> {
    let endpoint = std::env::var("CKPT_TEST_S3_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        if std::env::var("CKPT_SKIP_S3").as_deref() == Ok("1") {
            eprintln!("CKPT_SKIP_S3=1: skipping an S3 test");
            return None;
        }
        panic!("CKPT_TEST_S3_ENDPOINT is not set: {HOW_TO_RUN}");
    }
    assert_loopback(&endpoint, "CKPT_TEST_S3_ENDPOINT");
    let bucket = std::env::var("CKPT_TEST_S3_BUCKET").unwrap_or_else(|_| "ckpt-test".into());
    let region = std::env::var("CKPT_TEST_S3_REGION").unwrap_or_else(|_| "us-east-1".into());
    Some((endpoint, bucket, region))
}

/// Tests never send traffic off this machine.
pub fn assert_loopback(url: &str, var: &str) {
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    assert!(
        host == "localhost" || host.starts_with("127.") || host == "[::1]",
        "{var}={url:?} is not a loopback address; the tests only talk to a local server"
    );
}

/// A prefix no other test (in this or another run) uses.
pub fn fresh_prefix(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
