//! Bad input, 13: the `ckpt` tool.

use super::handler_strings::{good_two_item_step, set_handler};
use super::*;

/// `ckpt show` of a step whose item was written by a handler this program does not have: the
/// handler string is shown, the value is null, exit status 0 (show is an inspector, not a
/// restore).
#[test]
fn cli_show_with_unknown_and_tensorstore_handlers() {
    let handlers = [
        "my_project.handlers.FancyHandler",
        ORBAX_TENSORSTORE_HANDLERS[0],
    ];
    for ts in handlers {
        case(&format!("ckpt show, handler {ts}"), |sb| {
            good_two_item_step(sb);
            set_handler(sb, "state", ts);
            let before = tree_with_mtimes(&sb.root);
            let (code, out, err) = ckpt_cli(&["show", sb.root_str(), "1", "--json"]);
            assert_eq!(code, Some(0), "stderr: {err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["items"]["state"]["handler"], json!(ts));
            assert_eq!(v["items"]["state"]["value"], Value::Null);
            assert_eq!(v["items"]["other"]["value"], json!("fine"));
            let (code, out, _) = ckpt_cli(&["show", sb.root_str(), "1"]);
            assert_eq!(code, Some(0));
            assert!(out.contains(ts), "{out}");
            assert_unchanged(&before, &sb.root, "ckpt show");
        });
    }
}

/// `ckpt ls` of a root holding everything at once — broken metadata, NaN metrics, junk names,
/// a file named like a step, step-named symlinks to outside — lists the real steps only, with
/// null metrics where they are not numbers, exits 0 and changes nothing; `ckpt gc` with a policy
/// keeping nothing deletes the real steps only.
#[test]
fn cli_ls_and_gc_on_a_root_full_of_bad_input() {
    case("ckpt ls / gc on a messy root", |sb| {
        good_root(&sb.root, &[1, 2, 3]);
        fs::write(sb.root.join("1/_CHECKPOINT_METADATA"), b"{\"item_han").unwrap();
        fs::write(sb.root.join("2/metrics/metrics"), b"{\"loss\": NaN}").unwrap();
        for j in ["007", "5x", "+5", "1e3", "\u{663}"] {
            fake_step(&sb.root.join(j), &json!(j));
        }
        fs::write(sb.root.join("8"), b"file").unwrap();
        symlink(sb.outside.join("stepdir"), sb.root.join("9")).unwrap();
        symlink(
            sb.outside.join("stepdir"),
            sb.root.join("10.orbax-checkpoint-tmp"),
        )
        .unwrap();
        let before = tree_with_mtimes(&sb.root);
        let (code, out, err) = ckpt_cli(&["ls", "--json", sb.root_str()]);
        assert_eq!(code, Some(0), "stderr: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let steps: Vec<u64> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(v["steps"][0]["items"], json!([]), "unreadable metadata");
        assert_eq!(v["steps"][1]["metrics"], json!({"loss": null}));
        assert_eq!(v["latest_step"], json!(3));
        let (code, _, err) = ckpt_cli(&["ls", sb.root_str()]);
        assert_eq!(code, Some(0), "stderr: {err}");
        let (code, _, err) = ckpt_cli(&["show", sb.root_str(), "1"]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains("Corrupt") && err.contains("_CHECKPOINT_METADATA"),
            "{err}"
        );
        let (code, _, err) = ckpt_cli(&["show", sb.root_str(), "9"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("NotFound"), "{err}");
        assert_unchanged(&before, &sb.root, "ckpt ls/show");

        let policy = sb.base.join("keep_none.json");
        fs::write(&policy, r#"{"type": "LatestN", "n": 0}"#).unwrap();
        // A policy keeping nothing needs --allow-empty (issue 11, item 9).
        let (code, out, err) = ckpt_cli(&[
            "gc",
            sb.root_str(),
            "--policy",
            policy.to_str().unwrap(),
            "--json",
            "--allow-empty",
        ]);
        fs::remove_file(&policy).unwrap();
        assert_eq!(code, Some(0), "stderr: {err}");
        let d: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(d.as_array().unwrap().len(), 3, "{d}");
        for s in ["1", "2", "3"] {
            assert!(!sb.root.join(s).exists(), "step {s} deleted");
        }
        for j in [
            "007",
            "5x",
            "+5",
            "1e3",
            "\u{663}",
            "8",
            "9",
            "10.orbax-checkpoint-tmp",
        ] {
            assert!(fs::symlink_metadata(sb.root.join(j)).is_ok(), "{j} kept");
        }
    });
}

#[test]
fn cli_junk_arguments() {
    case("ckpt with junk arguments", |sb| {
        good_root(&sb.root, &[1]);
        let before = tree_with_mtimes(&sb.root);
        let one_line = |args: &[&str], needle: &str| {
            let (code, out, err) = ckpt_cli(args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("ckpt: "), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        };
        one_line(
            &["ls", sb.root_str(), "--step-prefix", "a/b"],
            "InvalidConfig",
        );
        one_line(
            &["show", sb.root_str(), "1", "--step-prefix", "a/b"],
            "step_prefix",
        );
        one_line(&["ls", "s4://bucket/x"], "\"s4\"");
        one_line(&["ls", ""], "InvalidArgument");
        // clap's own errors: usage on stderr, exit 2, no panic.
        for args in [
            &["frobnicate"][..],
            &["ls"],
            &["show", sb.root_str()],
            &["ls", sb.root_str(), "--step-format-fixed-length", "x"],
            // A step that is not decimal digits.
            &["show", sb.root_str(), " 1"],
            &["show", sb.root_str(), "\u{661}"],
        ] {
            let (code, _, err) = ckpt_cli(args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        assert_unchanged(&before, &sb.root, "ckpt with junk arguments");
        fs::write(sb.root.join("1/state/metadata"), b"{\"trunc").unwrap();
        let broken = tree_with_mtimes(&sb.root);
        one_line(&["show", sb.root_str(), "1"], "1/state/metadata");
        assert_unchanged(&broken, &sb.root, "ckpt show of a corrupt item");
    });
}
