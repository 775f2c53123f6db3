//! The storage conformance suite against a Google Cloud Storage emulator on loopback (feature
//! `gcs`; run with `cargo xtask gcs-test`, which installs and starts `gcp-storage-emulator`
//! from PyPI and sets the variables below). The emulator is a stub: it ignores conditional
//! creates and has no multipart uploads, so those two are not tested here (see the README).
//!
//! Server: `CKPT_TEST_GCS_ENDPOINT` (a loopback URL such as `http://127.0.0.1:9023`),
//! `CKPT_TEST_GCS_BUCKET` (default `ckpt-test`, must exist); requests are unsigned. Without
//! `CKPT_TEST_GCS_ENDPOINT` every test FAILS with a message saying how to run them, unless
//! `CKPT_SKIP_GCS=1` is set. Each test works below its own fresh prefix.
#![cfg(feature = "gcs")]

use ckpt_storage::testkit;
use ckpt_storage::{protocol_for, AtomicityMode, GcsConfig, OpendalStore, Store};
use std::sync::atomic::{AtomicUsize, Ordering};

fn config(name: &str) -> Option<GcsConfig> {
    let endpoint = std::env::var("CKPT_TEST_GCS_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        if std::env::var("CKPT_SKIP_GCS").as_deref() == Ok("1") {
            return None;
        }
        panic!(
            "CKPT_TEST_GCS_ENDPOINT is not set: the GCS tests need an emulator; run them with \
             `cargo xtask gcs-test`, or set CKPT_SKIP_GCS=1 to skip them explicitly"
        );
    }
    let host = endpoint.trim_start_matches("http://");
    assert!(
        host.starts_with("127.") || host.starts_with("localhost"),
        "CKPT_TEST_GCS_ENDPOINT={endpoint:?} is not a loopback address"
    );
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let prefix = format!(
        "t-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let bucket = std::env::var("CKPT_TEST_GCS_BUCKET").unwrap_or_else(|_| "ckpt-test".into());
    let mut c = GcsConfig::new(bucket, prefix);
    c.endpoint = Some(endpoint);
    c.allow_anonymous = true;
    // gcp-storage-emulator has no XML multipart API: keep every write of this suite one PUT.
    c.upload.multipart_threshold = 1 << 30;
    Some(c)
}

#[test]
fn conformance_run_all() {
    let Some(c) = config("run-all") else { return };
    let s = OpendalStore::gcs(c.clone()).unwrap();
    let caps = s.capabilities();
    assert!(!caps.rename && !caps.directories);
    assert_eq!(
        protocol_for(AtomicityMode::Auto, caps).unwrap().mode(),
        AtomicityMode::CommitFile
    );
    assert_eq!(
        s.location("3/default"),
        format!("gs://{}/{}/3/default", c.bucket, c.prefix)
    );
    // Everything of `run_all` but the conditional create, which no emulator installable here
    // honours (both gcp-storage-emulator and fake-gcs-server ignore `ifGenerationMatch=0`):
    // `put_if_absent` and `commit_protocol` (whose second commit must lose) are left out, and
    // `large_file` is one 20 MiB PUT (no multipart API in the emulator).
    testkit::put_get(&s);
    testkit::range_get(&s);
    testkit::stat(&s);
    testkit::list_dir(&s);
    testkit::list_many(&s, testkit::LIST_MANY);
    testkit::delete(&s);
    testkit::delete_prefix(&s);
    testkit::rename(&s);
    testkit::odd_names(&s);
    testkit::empty_files(&s);
    testkit::large_file(&s);
    testkit::bad_paths(&s);
    testkit::sync_dir(&s);
}
