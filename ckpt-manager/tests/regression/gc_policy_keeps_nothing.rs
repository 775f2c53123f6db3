//! Item 9: `ckpt gc` with `LatestN n=0` (or any policy that keeps nothing) deleted every step and
//! exited 0. It now refuses, before deleting anything (and says so in a dry run), unless
//! `--allow-empty` is given.

use crate::common::{ckpt, root_with_losses, steps_of};

#[test]
fn gc_with_a_policy_that_keeps_no_step_is_refused_unless_allow_empty() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 6);
    let all = [10, 20, 30, 40, 50, 60];
    let policy = d.path().join("none.toml");
    std::fs::write(&policy, "type = \"LatestN\"\nn = 0\n").unwrap();
    let policy = policy.to_str().unwrap();

    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy]);
    assert_eq!(code, Some(1), "gc deleted every step: {out}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ckpt: InvalidConfig: the policy keeps none of the 6 step(s)")
            && err.contains("nothing was deleted")
            && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(steps_of(&root), all);

    // A dry run shows the decisions, then says that gc would refuse them.
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy, "--dry-run"]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.matches("would delete").count(), 6, "{out}"); // one row per step
    assert!(out.contains("dry run: 0 kept, 6 would be deleted"), "{out}");
    assert!(
        err.contains("keeps none") && err.contains("--allow-empty"),
        "{err}"
    );
    assert_eq!(steps_of(&root), all);

    // Opted in: every step goes, as the policy says.
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy, "--allow-empty"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 kept, 6 deleted"), "{out}");
    assert_eq!(steps_of(&root), Vec::<u64>::new());
    // An empty root has nothing to refuse.
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 kept, 0 deleted"), "{out}");
}

#[test]
fn gc_with_a_composite_policy_that_keeps_nothing_is_refused_too() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 3);
    let policy = d.path().join("none.json");
    std::fs::write(
        &policy,
        r#"{"type": "AnyPreservationPolicy", "policies": [
            {"type": "BestN", "metric": "val_loss", "mode": "min", "n": 0},
            {"type": "EveryNSteps", "interval_steps": 7}]}"#,
    )
    .unwrap();
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy.to_str().unwrap(), "--json"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("keeps none of the 3 step(s)"), "{err}");
    assert_eq!(steps_of(&root), [10, 20, 30]);
}
