//! The storage conformance suite and the commit-file protocol against Azurite, the Azure
//! Storage emulator, on loopback (feature `azblob`; run with `cargo xtask azurite-test`, which
//! installs and starts Azurite and sets the variables below).
//!
//! Server: `CKPT_TEST_AZBLOB_ENDPOINT` (a loopback URL such as
//! `http://127.0.0.1:10000/devstoreaccount1`), `CKPT_TEST_AZBLOB_CONTAINER` (default
//! `ckpt-test`, must exist); the account is Azurite's well-known development account. Without
//! `CKPT_TEST_AZBLOB_ENDPOINT` every test FAILS with a message saying how to run them, unless
//! `CKPT_SKIP_AZBLOB=1` is set. Each test works below its own fresh prefix.
#![cfg(feature = "azblob")]

use ckpt_core::ErrorKind;
use ckpt_storage::testkit;
use ckpt_storage::{
    protocol_for, AtomicityMode, AzblobConfig, CommitFileProtocol, CommitProtocol, OpendalStore,
    Store, AZURITE_ACCOUNT, AZURITE_KEY,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

fn config(name: &str) -> Option<AzblobConfig> {
    let endpoint = std::env::var("CKPT_TEST_AZBLOB_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        if std::env::var("CKPT_SKIP_AZBLOB").as_deref() == Ok("1") {
            return None;
        }
        panic!(
            "CKPT_TEST_AZBLOB_ENDPOINT is not set: the Azure Blob tests need Azurite; run them \
             with `cargo xtask azurite-test`, or set CKPT_SKIP_AZBLOB=1 to skip them explicitly"
        );
    }
    let host = endpoint.trim_start_matches("http://");
    assert!(
        host.starts_with("127.") || host.starts_with("localhost"),
        "CKPT_TEST_AZBLOB_ENDPOINT={endpoint:?} is not a loopback address"
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
    let container =
        std::env::var("CKPT_TEST_AZBLOB_CONTAINER").unwrap_or_else(|_| "ckpt-test".into());
    let mut c = AzblobConfig::new(container, prefix);
    c.endpoint = Some(endpoint);
    c.account_name = Some(AZURITE_ACCOUNT.into());
    c.account_key = Some(AZURITE_KEY.into());
    Some(c)
}

#[test]
fn conformance_run_all() {
    let Some(c) = config("run-all") else { return };
    let s = OpendalStore::azblob(c).unwrap();
    let caps = s.capabilities();
    assert!(!caps.rename && caps.write_if_absent && !caps.directories);
    assert_eq!(
        protocol_for(AtomicityMode::Auto, caps).unwrap().mode(),
        AtomicityMode::CommitFile
    );
    testkit::run_all(&s);
}

#[test]
fn large_block_upload() {
    let Some(c) = config("large") else { return };
    let s = OpendalStore::azblob(c).unwrap();
    testkit::large_file_of(&s, "big/blob", 40 << 20);
}

#[test]
fn location_and_open_uri() {
    let Some(c) = config("uri") else { return };
    let s = OpendalStore::azblob(c.clone()).unwrap();
    assert_eq!(
        s.location("3/default"),
        format!("azblob://{}/{}/3/default", c.container, c.prefix)
    );
    // open() reads AZURE_STORAGE_* (set by `cargo xtask azurite-test`).
    if std::env::var("AZURE_STORAGE_ENDPOINT").is_ok() {
        let uri = format!("azblob://{}/{}", c.container, c.prefix);
        let u = ckpt_storage::open(&uri).unwrap();
        u.write("x", b"via uri").unwrap();
        assert_eq!(s.read("x").unwrap(), b"via uri");
    }
}

#[test]
fn two_committers_one_wins() {
    let Some(c) = config("race") else { return };
    let s: Arc<dyn Store> = Arc::new(OpendalStore::azblob(c).unwrap());
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|who| {
            let (s, b) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                let wrote = s.write(&format!("7/by-{who}"), b"data");
                b.wait();
                wrote?;
                CommitFileProtocol.commit(s.as_ref(), "7", "7")
            })
        })
        .collect();
    let results: Vec<ckpt_core::Result<()>> = handles
        .into_iter()
        .map(|h| h.join().expect("committer thread"))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let loser = results.into_iter().find_map(|r| r.err()).unwrap();
    assert_eq!(loser.kind(), ErrorKind::AlreadyExists, "{loser}");
}
