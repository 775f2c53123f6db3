//! Where an `s3://` URI gets its credentials (issue 16), against a real S3-compatible server on
//! loopback (moto, as `s3_conformance.rs`): the keys in `AWS_ACCESS_KEY_ID` /
//! `AWS_SECRET_ACCESS_KEY`; a named profile in a shared credentials file (with its region in the
//! config file), chosen by `AWS_PROFILE`; the ECS container credentials endpoint and the EC2
//! instance metadata service (IMDSv2), each a fake on loopback; nothing at all (the error lists
//! what was tried); an instance metadata service that never answers (the chain gives up in
//! bounded time). Web identity is not tested: reqsign sends it to AWS's STS, which has no
//! endpoint override.
//!
//! The environment is process-wide, so each case runs in a child process of this test binary
//! (the ignored test `child`, started with `--ignored --exact child`) whose environment is
//! exactly what the case sets: `HOME` is an empty temporary directory (the user's `~/.aws` is
//! never read) and `AWS_EC2_METADATA_DISABLED=true` unless the case points the metadata service
//! at a loopback listener of its own; nothing is sent off this machine.
//!
//! moto accepts any key, so which keys signed a request is checked on a second store opened the
//! same way whose endpoint is a loopback listener recording the first request's
//! `Authorization` header (`Credential=<key id>/<date>/<region>/s3/...`).
//!
//! Like the other S3 tests: without `CKPT_TEST_S3_ENDPOINT` every test here FAILS with a message
//! saying how to run them, unless `CKPT_SKIP_S3=1` is set.
#![cfg(feature = "s3")]

use ckpt_core::ErrorKind;
use ckpt_storage::{OpendalStore, S3Config, Store};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod s3_server;
use s3_server::{assert_loopback, fresh_prefix, server};

/// The variable telling the child process which case to run.
const CASE: &str = "CKPT_TEST_CREDENTIALS_CASE";

/// The profile of the profile cases, its keys and its region (not the server's default, to
/// see that it comes from the config file).
const PROFILE: &str = "ckpt-cred-test";
const PROFILE_KEY_ID: &str = "AKIDPROFILECASE";
const PROFILE_REGION: &str = "eu-west-3";
const ENV_KEY_ID: &str = "AKIDENVCASE";

/// A temporary directory with an empty `home/` and, for the profile cases, `aws/credentials`
/// holding only [`PROFILE`] and `aws/config` holding its region.
fn aws_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::create_dir_all(dir.join("aws")).unwrap();
    std::fs::write(
        dir.join("aws/credentials"),
        format!(
            "[{PROFILE}]\naws_access_key_id = {PROFILE_KEY_ID}\n\
             aws_secret_access_key = profile-secret\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("aws/config"),
        format!("[profile {PROFILE}]\nregion = {PROFILE_REGION}\n"),
    )
    .unwrap();
}

/// Runs `case` in a child process of this test binary with exactly the environment the tests
/// need (server, `HOME`) and `extra` (where `{aws}` stands for the directory of the files of
/// [`aws_files`]); panics with the child's output unless it passed.
fn run_case(case: &str, extra: &[(&str, String)]) {
    let Some((endpoint, bucket, region)) = server() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    aws_files(dir.path());
    let home = dir.path().join("home").to_string_lossy().into_owned();
    let aws = dir.path().join("aws").to_string_lossy().into_owned();
    let mut env: Vec<(&str, String)> = vec![
        ("HOME", home),
        ("CKPT_TEST_S3_ENDPOINT", endpoint.clone()),
        ("CKPT_TEST_S3_BUCKET", bucket),
        ("CKPT_TEST_S3_REGION", region),
        ("AWS_ENDPOINT_URL", endpoint),
        ("CKPT_TEST_AWS_DIR", aws.clone()),
        (CASE, case.to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.replace("{aws}", &aws))));
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    let out = Command::new(exe)
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "case {case} failed after {:?}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    assert!(
        stdout.contains(&format!("case {case} done")),
        "case {case} did not run:\n{stdout}"
    );
}

/// `AWS_EC2_METADATA_DISABLED=true`: never ask 169.254.169.254.
fn no_imds() -> (&'static str, String) {
    ("AWS_EC2_METADATA_DISABLED", "true".into())
}

/// The keys of the variables sign the requests.
#[test]
fn keys_from_the_environment() {
    run_case(
        "env",
        &[
            no_imds(),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", ENV_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", "env-secret".into()),
        ],
    );
}

/// No credential variable: the named profile of the shared credentials file signs, in the
/// region of its config file.
#[test]
fn keys_from_a_named_profile() {
    run_case(
        "profile",
        &[
            no_imds(),
            ("AWS_PROFILE", PROFILE.into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "{aws}/credentials".into()),
            ("AWS_CONFIG_FILE", "{aws}/config".into()),
        ],
    );
}

/// The same files without `AWS_PROFILE`: the `default` profile is not there, nothing signs, and
/// the error says so (so the profile case above really used the profile).
#[test]
fn without_the_profile_nothing_signs() {
    run_case(
        "profile_absent",
        &[
            no_imds(),
            ("AWS_SHARED_CREDENTIALS_FILE", "{aws}/credentials".into()),
            ("AWS_CONFIG_FILE", "{aws}/config".into()),
        ],
    );
}

/// `AWS_PROFILE` naming a profile the files do not have: the error names it and both files.
#[test]
fn a_missing_named_profile_is_named() {
    run_case(
        "profile_unknown",
        &[
            no_imds(),
            ("AWS_PROFILE", "nope".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "{aws}/credentials".into()),
            ("AWS_CONFIG_FILE", "{aws}/config".into()),
        ],
    );
}

/// No credentials anywhere: `InvalidConfig` listing, in order, what was tried.
#[test]
fn no_credentials_lists_what_was_tried() {
    run_case("none", &[no_imds(), ("AWS_REGION", "us-east-1".into())]);
}

/// An instance metadata service that accepts connections and never answers (a loopback
/// listener of the child's own): the chain gives up after 3 × `AWS_METADATA_SERVICE_TIMEOUT`.
#[test]
fn silent_metadata_service_is_given_up_in_time() {
    // Accepts connections and holds them, answering nothing, for as long as this test runs.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept() {
            held.push(conn);
        }
    });
    run_case(
        "imds_silent",
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_METADATA_SERVICE_TIMEOUT", "0.5".into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url),
        ],
    );
}

/// A loopback HTTP server (threads of this process) answering every request with
/// `answer(method, path)` as a 200 (`None`: 404), one request per connection; returns its URL.
fn fake_service(answer: fn(&str, &str) -> Option<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        while let Ok((mut conn, _)) = listener.accept() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let mut first = head.lines().next().unwrap_or("").split(' ');
            let (method, path) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
            let reply = match answer(method, path) {
                Some(body) => format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_string(),
            };
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    url
}

const ECS_KEY_ID: &str = "AKIDECSCASE";
const IMDS_KEY_ID: &str = "AKIDIMDSCASE";

/// Temporary credentials as the ECS endpoint and IMDS return them.
fn temporary_credentials(key_id: &str) -> String {
    format!(
        "{{\"Code\":\"Success\",\"AccessKeyId\":\"{key_id}\",\"SecretAccessKey\":\"s\",\
         \"Token\":\"session-token\",\"Expiration\":\"2099-01-01T00:00:00Z\"}}"
    )
}

/// No keys, no profile: the ECS container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`,
/// here a fake on loopback) gives the task role's temporary credentials, which sign.
#[test]
fn keys_from_the_container_credentials_endpoint() {
    let url = fake_service(|method, path| {
        (method == "GET" && path == "/creds").then(|| temporary_credentials(ECS_KEY_ID))
    });
    run_case(
        "ecs",
        &[
            no_imds(),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{url}/creds")),
        ],
    );
}

/// No keys, no profile, no container: the EC2 instance metadata service (IMDSv2: token, role,
/// credentials; here a fake on loopback via `AWS_EC2_METADATA_SERVICE_ENDPOINT`) gives the
/// instance profile's temporary credentials, which sign.
#[test]
fn keys_from_the_instance_metadata_service() {
    let url = fake_service(|method, path| match (method, path) {
        ("PUT", "/latest/api/token") => Some("imds-token".into()),
        ("GET", "/latest/meta-data/iam/security-credentials/") => Some("the-role".into()),
        ("GET", "/latest/meta-data/iam/security-credentials/the-role") => {
            Some(temporary_credentials(IMDS_KEY_ID))
        }
        _ => None,
    });
    run_case(
        "imds",
        &[
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", url),
        ],
    );
}

// ---- the child side ----

/// A loopback listener that records the head of the first request it gets and answers 404;
/// returns its URL and the recorded head.
fn recorder() -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return String::new();
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        String::from_utf8_lossy(&head).into_owned()
    });
    (url, handle)
}

/// The `Credential=` scope of the first request a store opened like `s3://bucket/prefix` (from
/// the environment) sends, with the endpoint replaced by a recorder.
fn signing_scope(bucket: &str, prefix: &str) -> String {
    let (url, handle) = recorder();
    let mut c = S3Config::from_env(bucket, prefix).unwrap();
    c.endpoint = Some(url);
    let store = OpendalStore::s3(c).unwrap();
    assert!(store.read("probe").is_err(), "the recorder answers 404");
    let head = handle.join().unwrap();
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .unwrap_or_else(|| panic!("no Authorization header in:\n{head}"));
    let scope = line
        .split("Credential=")
        .nth(1)
        .unwrap_or_else(|| panic!("no Credential= in {line}"));
    scope.split(',').next().unwrap_or("").to_string()
}

/// A write and a read back through `open("s3://bucket/prefix")`.
fn round_trip(bucket: &str, prefix: &str) {
    let store = ckpt_storage::open(&format!("s3://{bucket}/{prefix}")).unwrap();
    store.write("a/b.txt", b"credentials").unwrap();
    assert_eq!(store.read("a/b.txt").unwrap(), b"credentials");
    assert_eq!(
        store.list_recursive("").unwrap(),
        vec!["a/b.txt".to_string()]
    );
}

/// The error of a listing through `open("s3://bucket/prefix")` (with its default retries), and
/// how long it took.
fn listing_error(bucket: &str, prefix: &str) -> (ckpt_core::Error, Duration) {
    let store = ckpt_storage::open(&format!("s3://{bucket}/{prefix}")).unwrap();
    let started = Instant::now();
    let e = store
        .list_dir("")
        .expect_err("listing without credentials must fail");
    (e, started.elapsed())
}

/// The error's text followed by the texts of its causes (`source()` chain), `: `-separated:
/// what a user sees, whether or not `Display` includes the cause.
fn chain_text(e: &ckpt_core::Error) -> String {
    let mut text = e.to_string();
    let mut cur = std::error::Error::source(e);
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    text
}

/// `needles` all occur in `text`, in this order.
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for n in needles {
        match text[from..].find(n) {
            Some(i) => from += i + n.len(),
            None => panic!("{n:?} missing (or out of order) in:\n{text}"),
        }
    }
}

/// The cases, run in a child process by the tests above (ignored when run directly).
#[test]
#[ignore = "a child process of the other tests of this file"]
fn child() {
    let Ok(case) = std::env::var(CASE) else {
        eprintln!("{CASE} not set: nothing to do");
        return;
    };
    let (_, bucket, _) = server().expect("the parent sets CKPT_TEST_S3_ENDPOINT");
    assert_loopback(
        &std::env::var("AWS_ENDPOINT_URL").unwrap(),
        "AWS_ENDPOINT_URL",
    );
    let prefix = fresh_prefix(&case);
    let home = std::env::var("HOME").unwrap();
    let aws = std::env::var("CKPT_TEST_AWS_DIR").unwrap();
    match case.as_str() {
        "env" => {
            round_trip(&bucket, &prefix);
            let scope = signing_scope(&bucket, &prefix);
            assert!(
                scope.starts_with(&format!("{ENV_KEY_ID}/")) && scope.contains("/us-east-1/s3/"),
                "{scope}"
            );
        }
        "ecs" | "imds" => {
            let imds = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT");
            let ecs = std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI");
            for url in imds.iter().chain(ecs.iter()) {
                assert_loopback(url, "the fake metadata service");
            }
            round_trip(&bucket, &prefix);
            let key = if case == "ecs" {
                ECS_KEY_ID
            } else {
                IMDS_KEY_ID
            };
            let scope = signing_scope(&bucket, &prefix);
            assert!(scope.starts_with(&format!("{key}/")), "{scope}");
        }
        "profile" => {
            // The keys are in no variable, only in the files the parent named.
            assert!(std::env::var("AWS_ACCESS_KEY_ID").is_err());
            let c = S3Config::from_env(&bucket, &prefix).unwrap();
            assert_eq!(c.region, PROFILE_REGION);
            assert_eq!(c.profile.as_deref(), Some(PROFILE));
            round_trip(&bucket, &prefix);
            let scope = signing_scope(&bucket, &prefix);
            assert!(
                scope.starts_with(&format!("{PROFILE_KEY_ID}/"))
                    && scope.contains(&format!("/{PROFILE_REGION}/s3/")),
                "{scope}"
            );
        }
        "profile_absent" => {
            let (e, _) = listing_error(&bucket, &prefix);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            let text = chain_text(&e);
            assert_in_order(
                &text,
                &[
                    "profile \"default\" (AWS_PROFILE not set)",
                    &format!("{aws}/credentials: no [default] section"),
                    &format!("{aws}/config: no [default] section"),
                ],
            );
        }
        "profile_unknown" => {
            let (e, _) = listing_error(&bucket, &prefix);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert_in_order(
                &chain_text(&e),
                &[
                    "profile \"nope\" (from AWS_PROFILE)",
                    &format!("{aws}/credentials: no [nope] section"),
                    &format!("{aws}/config: no [profile nope] section"),
                    "IAM Identity Center (SSO) of profile \"nope\"",
                ],
            );
        }
        "none" => {
            let (e, took) = listing_error(&bucket, &prefix);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert!(!e.is_temporary(), "{e}");
            assert!(took < Duration::from_secs(10), "took {took:?}: {e}");
            let text = chain_text(&e);
            println!("the error: {text}");
            assert_in_order(
                &text,
                &[
                    "list failed: no S3 credentials found. Tried, in order:",
                    "1) the variables AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (not set)",
                    "2) profile \"default\" (AWS_PROFILE not set) in the shared credentials file",
                    &format!("{home}/.aws/credentials: no such file"),
                    &format!("{home}/.aws/config: no such file"),
                    "3) IAM Identity Center (SSO)",
                    "4) web identity",
                    "AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE: not set",
                    "5) ECS/container credentials",
                    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                    "6) EC2 instance metadata, IMDSv2 (skipped: AWS_EC2_METADATA_DISABLED=true)",
                    "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                    "AWS_PROFILE",
                    "CKPT_S3_ALLOW_ANONYMOUS=1",
                    // opendal's (reqsign's) own words, kept as the source.
                    "failed to load signing credential",
                ],
            );
            assert!(text.contains(&format!("s3://{bucket}/{prefix}")), "{text}");
        }
        "imds_silent" => {
            // The parent's listener, which accepts and never answers.
            let imds = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT").unwrap();
            assert_loopback(&imds, "AWS_EC2_METADATA_SERVICE_ENDPOINT");
            let (e, took) = listing_error(&bucket, &prefix);
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{e}");
            assert!(
                took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
                "took {took:?}: {e}"
            );
            assert_in_order(
                &chain_text(&e),
                &[
                    "6) EC2 instance metadata, IMDSv2",
                    &format!("{imds}: no credentials within 1.5s"),
                ],
            );
        }
        other => panic!("unknown case {other:?}"),
    }
    println!("case {case} done");
}
