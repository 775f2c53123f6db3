//! Issue 11, item 7: with a composite name format reading both `7` and `ckpt_7`, retention
//! deleted `7` and left `ckpt_7`, so step 7 came back at the next listing. A step's directory
//! under every name the format reads is now deleted with it.

use ckpt_manager::core::{CompositeNameFormat, StandardNameFormat};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::sync::Arc;

fn composite() -> Arc<CompositeNameFormat> {
    let prefixed = || Box::new(StandardNameFormat::new(Some("ckpt"), None).unwrap());
    let plain = Box::new(StandardNameFormat::new(None, None).unwrap());
    Arc::new(CompositeNameFormat::new(prefixed(), vec![plain, prefixed()]).unwrap())
}

fn save(m: &mut CheckpointManager, step: u64) {
    assert!(m
        .save(
            step,
            Composite::new().json_value("s", json!(step)),
            SaveOptions::default()
        )
        .unwrap());
    m.wait_until_finished().unwrap();
}

#[test]
fn retention_deletes_a_step_under_every_name_a_composite_format_reads() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    // Step 7 under the old name (plain) and under the new one (prefixed).
    for prefix in [None, Some("ckpt")] {
        let mut b = CheckpointManager::builder(root);
        if let Some(p) = prefix {
            b = b.step_prefix(p);
        }
        let mut m = b.build().unwrap();
        save(&mut m, 7);
        m.close().unwrap();
    }
    assert!(d.path().join("7").is_dir() && d.path().join("ckpt_7").is_dir());

    let mut opts = ckpt_manager::CheckpointManagerOptions {
        max_to_keep: Some(1),
        ..Default::default()
    };
    opts.step_name_format = Some(composite());
    let mut m = CheckpointManager::open(root, opts.clone()).unwrap();
    assert_eq!(m.all_steps(), vec![7]);
    save(&mut m, 8);
    assert_eq!(m.all_steps(), vec![8]);
    m.close().unwrap();
    assert!(!d.path().join("7").exists(), "7 deleted");
    assert!(!d.path().join("ckpt_7").exists(), "and its twin ckpt_7 too");
    let again = CheckpointManager::open(root, opts).unwrap();
    assert_eq!(again.all_steps(), vec![8], "step 7 does not come back");
}
