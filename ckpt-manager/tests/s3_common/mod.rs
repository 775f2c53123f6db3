//! The local S3 server of the manager-level S3 tests, read from the environment as
//! ckpt-storage/tests/s3_conformance.rs reads it: `CKPT_TEST_S3_ENDPOINT` (must be a loopback
//! URL), `CKPT_TEST_S3_BUCKET` (default `ckpt-test`), `CKPT_TEST_S3_REGION`, and the standard
//! `AWS_*` variables for `s3://` URIs. `cargo xtask test` / `cargo xtask ci` start moto and set
//! them; without them every test FAILS with instructions, unless `CKPT_SKIP_S3=1`.
#![allow(dead_code)]

use ckpt_manager::storage::{OpendalStore, S3Config};
use std::sync::atomic::{AtomicUsize, Ordering};

const HOW_TO_RUN: &str = "the S3 tests need a local S3-compatible server: run them with \
`cargo xtask test` (or `cargo xtask ci`), which install and start moto on 127.0.0.1; or start one \
with `cargo xtask s3-server` and export the variables it prints; set CKPT_SKIP_S3=1 to skip them \
explicitly";

/// The server's endpoint, bucket and region; `None` (skip) only with `CKPT_SKIP_S3=1`.
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
    if let Ok(e) = std::env::var("AWS_ENDPOINT_URL") {
        assert_loopback(&e, "AWS_ENDPOINT_URL");
    } else {
        panic!("AWS_ENDPOINT_URL is not set (s3:// URIs need it): {HOW_TO_RUN}");
    }
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
        "m-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh root on the test server: its `s3://bucket/prefix` URI (opened with the `AWS_*`
/// environment) and an explicit configuration of the same place.
pub fn fresh_root(name: &str) -> Option<(String, S3Config)> {
    let (endpoint, bucket, region) = server()?;
    let prefix = fresh_prefix(name);
    let mut c = S3Config::new(bucket.clone(), prefix.clone());
    c.endpoint = Some(endpoint);
    c.region = region;
    c.access_key_id = Some("testing".into());
    c.secret_access_key = Some("testing".into());
    Some((format!("s3://{bucket}/{prefix}"), c))
}

/// The store of `config`.
pub fn store(config: &S3Config) -> std::sync::Arc<dyn ckpt_manager::storage::Store> {
    // As ckpt uses it: behind the retry layer (moto answers a 500 now and then under load).
    std::sync::Arc::new(ckpt_manager::storage::RetryStore::new(
        std::sync::Arc::new(OpendalStore::s3(config.clone()).expect("S3 store")),
        ckpt_manager::storage::RetryPolicy::default(),
    ))
}
