//! The storage conformance suite and the commit-file protocol against a real S3-compatible
//! server on loopback (moto, started by `cargo xtask ci` / `cargo xtask test`; by hand with
//! `cargo xtask s3-server`).
//!
//! The server comes from the environment: `CKPT_TEST_S3_ENDPOINT` (must be a loopback URL),
//! `CKPT_TEST_S3_BUCKET` (default `ckpt-test`), `CKPT_TEST_S3_REGION` (default `us-east-1`),
//! and for the `open("s3://…")` test the standard `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`. Without `CKPT_TEST_S3_ENDPOINT` every test here FAILS with a message
//! saying how to run them, unless `CKPT_SKIP_S3=1` is set (explicit skip, for quick local runs).
//! Each test works below its own fresh prefix of the bucket.
#![cfg(feature = "s3")]

use ckpt_core::{commit_success_text, ErrorKind, COMMIT_SUCCESS_FILE};
use ckpt_storage::testkit;
use ckpt_storage::{
    protocol_for, AtomicityMode, CommitFileProtocol, CommitProtocol, CountingStore, OpKind,
    OpendalStore, RetryPolicy, RetryStore, S3Config, Store,
};
use std::sync::{Arc, Barrier};

mod s3_server;
use s3_server::{assert_loopback, fresh_prefix, server, HOW_TO_RUN};

fn config(name: &str) -> Option<S3Config> {
    let (endpoint, bucket, region) = server()?;
    let mut c = S3Config::new(bucket, fresh_prefix(name));
    c.endpoint = Some(endpoint);
    c.region = region;
    c.access_key_id = Some("testing".into());
    c.secret_access_key = Some("testing".into());
    Some(c)
}

fn store(name: &str) -> Option<RetryStore> {
    let c = config(name)?;
    Some(retrying(OpendalStore::s3(c).expect("S3 store")))
}

/// The store as ckpt uses it (the manager and `open` put a retry layer over every object
/// store): moto answers a 500 now and then on a loaded machine, as real object stores do.
fn retrying(s: OpendalStore) -> RetryStore {
    RetryStore::new(std::sync::Arc::new(s), RetryPolicy::default())
}

#[test]
fn conformance_run_all() {
    let Some(s) = store("run-all") else { return };
    testkit::run_all(&s);
}

#[test]
fn capabilities_and_location() {
    let Some(c) = config("caps") else { return };
    let prefix = c.prefix.clone();
    let bucket = c.bucket.clone();
    let s = retrying(OpendalStore::s3(c).unwrap());
    let caps = s.capabilities();
    assert!(!caps.rename && caps.write_if_absent && !caps.directories && !caps.durable);
    assert_eq!(
        s.location("3/default"),
        format!("s3://{bucket}/{prefix}/3/default")
    );
    assert_eq!(s.location(""), format!("s3://{bucket}/{prefix}"));
    assert!(s.lock_for_writing().unwrap().is_none());
    assert_eq!(
        s.rename("a", "b").unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

/// Small pages (7 keys): every listing needs several requests, and must still see everything.
#[test]
fn listing_with_small_pages() {
    let Some(mut c) = config("pages") else { return };
    c.list_page_size = Some(7);
    let s = retrying(OpendalStore::s3(c).unwrap());
    testkit::list_many(&s, 50);
    testkit::list_dir(&s);
    testkit::odd_names(&s);
    testkit::stat(&s);
}

/// A 64 MiB object goes up as a concurrent multipart upload (8 parts of 8 MiB: the ETag of a
/// multipart object ends in `-<parts>`) and round-trips byte for byte.
#[test]
fn large_multipart_upload() {
    let Some(c) = config("large") else { return };
    let op = raw_operator(&c);
    let s = retrying(OpendalStore::s3(c).unwrap());
    let data: Vec<u8> = (0..64usize << 20).map(|i| (i % 253) as u8).collect();
    s.write("big/blob", &data).unwrap();
    let etag = op
        .stat("big/blob")
        .unwrap()
        .etag()
        .unwrap_or_default()
        .to_string();
    assert!(
        etag.trim_matches('"').ends_with("-8"),
        "64 MiB should be 8 parts of 8 MiB, ETag {etag}"
    );
    assert!(
        s.read("big/blob").unwrap() == data,
        "64 MiB read back differs"
    );
    // Below the threshold: one PUT (a plain MD5 ETag, no part count).
    s.write("big/small", &data[..(1 << 20)]).unwrap();
    let etag = op
        .stat("big/small")
        .unwrap()
        .etag()
        .unwrap_or_default()
        .to_string();
    assert!(!etag.contains('-'), "1 MiB should be one PUT, ETag {etag}");
    testkit::large_file_of(&s, "big/again", 64 << 20);
}

/// A plain opendal operator on the same prefix, to look at what the store wrote.
fn raw_operator(c: &S3Config) -> opendal::blocking::Operator {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    });
    let b = opendal::services::S3::default()
        .bucket(&c.bucket)
        .root(&format!("/{}", c.prefix))
        .region(&c.region)
        .endpoint(c.endpoint.as_deref().unwrap())
        .access_key_id("testing")
        .secret_access_key("testing")
        .disable_config_load()
        .disable_ec2_metadata();
    let _g = rt.enter();
    opendal::blocking::Operator::new(opendal::Operator::new(b).unwrap()).unwrap()
}

/// `open("s3://bucket/prefix")` takes the endpoint and keys from the standard environment.
#[test]
fn open_uri_from_environment() {
    let Some((_endpoint, bucket, _)) = server() else {
        return;
    };
    let aws = std::env::var("AWS_ENDPOINT_URL_S3")
        .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|_| {
            panic!("AWS_ENDPOINT_URL is not set (open(\"s3://…\") would go to AWS): {HOW_TO_RUN}")
        });
    assert_loopback(&aws, "AWS_ENDPOINT_URL");
    let prefix = fresh_prefix("uri");
    let uri = format!("s3://{bucket}/{prefix}/");
    let s = ckpt_storage::open(&uri).unwrap();
    assert_eq!(s.location("7"), format!("s3://{bucket}/{prefix}/7"));
    s.write("7/x", b"via uri").unwrap();
    assert_eq!(s.read("7/x").unwrap(), b"via uri");
    // The same objects through a store opened at the bucket root.
    let root = ckpt_storage::open(&format!("s3://{bucket}")).unwrap();
    assert_eq!(root.read(&format!("{prefix}/7/x")).unwrap(), b"via uri");
    testkit::put_get(s.as_ref());
    testkit::commit_protocol(s.as_ref(), AtomicityMode::CommitFile);
}

#[test]
fn missing_bucket_is_an_error_naming_it() {
    let Some(mut c) = config("nobucket") else {
        return;
    };
    c.bucket = "ckpt-no-such-bucket".into();
    let s = retrying(OpendalStore::s3(c).unwrap());
    let e = s.write("x", b"x").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Storage | ErrorKind::NotFound),
        "{e}"
    );
    assert!(e.to_string().contains("s3://ckpt-no-such-bucket/"), "{e}");
}

/// Auto picks the commit-file protocol on S3 (no rename).
#[test]
fn auto_picks_commit_file() {
    let Some(s) = store("auto") else { return };
    assert_eq!(
        protocol_for(AtomicityMode::Auto, s.capabilities())
            .unwrap()
            .mode(),
        AtomicityMode::CommitFile
    );
    assert_eq!(
        protocol_for(AtomicityMode::AtomicRename, s.capabilities())
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidConfig
    );
}

/// A step saved as the manager saves it (items committed inside the step, metadata, step
/// commit): zero renames, and the step's `commit_success.txt` is the last object written.
#[test]
fn commit_file_save_has_no_rename_and_commits_last() {
    let Some(s) = store("counting") else { return };
    let counting = CountingStore::new(Arc::new(s));
    let store: &dyn Store = &counting;
    let proto = protocol_for(AtomicityMode::Auto, store.capabilities()).unwrap();
    let step = "000003";
    let w = proto.prepare(store, step).unwrap();
    for item in ["default", "params"] {
        let item_final = format!("{w}/{item}");
        let iw = proto.prepare(store, &item_final).unwrap();
        store
            .write(&format!("{iw}/data.bin"), &[7u8; 1000])
            .unwrap();
        store.write(&format!("{iw}/_METADATA"), b"{}").unwrap();
        proto.commit(store, &iw, &item_final).unwrap();
    }
    store
        .write(&format!("{w}/_CHECKPOINT_METADATA"), b"{}")
        .unwrap();
    proto.commit(store, &w, step).unwrap();

    let counts = counting.counts();
    assert_eq!(counts.rename, 0, "{counts:?}");
    let writes: Vec<_> = counting
        .log()
        .into_iter()
        .filter(|op| matches!(op.op, OpKind::Write | OpKind::WriteIfAbsent))
        .collect();
    let last = writes.last().expect("writes were logged");
    assert_eq!(last.op, OpKind::WriteIfAbsent, "{writes:?}");
    assert_eq!(last.path, format!("{step}/{COMMIT_SUCCESS_FILE}"));
    assert!(last.ok);
    assert_eq!(
        store
            .read(&format!("{step}/{COMMIT_SUCCESS_FILE}"))
            .unwrap(),
        commit_success_text(&store.location(step)).as_bytes()
    );
    assert!(proto.is_committed(store, "", step).unwrap());
}

/// Two committers of the same step: exactly one wins; the other gets `AlreadyExists` from the
/// conditional create, and the winner's commit file stays.
#[test]
fn two_committers_one_wins() {
    let Some(s) = store("race") else { return };
    let s: Arc<dyn Store> = Arc::new(s);
    for round in 0..5 {
        let step = format!("{round}");
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<ckpt_core::Result<()>> = (0..2)
            .map(|who| {
                let s = s.clone();
                let b = barrier.clone();
                let step = step.clone();
                std::thread::spawn(move || {
                    let p = CommitFileProtocol;
                    let wrote = s.write(&format!("{step}/by-{who}"), b"data");
                    // Both wait, whatever happened, so that neither can hang the other.
                    b.wait();
                    wrote?;
                    p.commit(s.as_ref(), &step, &step)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("committer thread"))
            .collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        let loser = results.into_iter().find_map(|r| r.err()).unwrap();
        assert_eq!(loser.kind(), ErrorKind::AlreadyExists, "{loser}");
        assert!(CommitFileProtocol
            .is_committed(s.as_ref(), "", &step)
            .unwrap());
    }
}
