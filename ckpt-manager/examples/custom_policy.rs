//! A preservation policy defined outside ckpt-policy, used by the manager through a config file.
//!
//! ```text
//! cargo run --example custom_policy [-- DIR]
//! ```
//!
//! [`KeepEvenSteps`] is this crate's own policy: one `#[typetag::serde]` attribute registers it
//! under its type name, so a JSON or TOML config can name it — alone or inside ckpt's own
//! `AnyPreservationPolicy` — exactly as it names a built-in policy. The program writes such a
//! config, loads it with `ManagerConfig::from_file`, saves steps 1 to 7 and prints what the
//! manager kept: the even steps, and the newest (`LatestN`, n = 1).
//!
//! typetag registers implementations at link time: the config can name `KeepEvenSteps` only in a
//! program that links the code defining it (this example, or a test that includes it).

use ckpt_manager::policy::{PreservationContext, PreservationPolicy, Verdict};
use ckpt_manager::{
    CheckpointInfo, CheckpointManager, Composite, ManagerConfig, SaveOptions, Step,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::ExitCode;

/// Keeps the checkpoints of even steps: JSON `{"type": "KeepEvenSteps"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepEvenSteps {}

#[typetag::serde]
impl PreservationPolicy for KeepEvenSteps {
    fn should_preserve(
        &self,
        checkpoints: &[CheckpointInfo],
        _cx: &PreservationContext,
    ) -> Vec<Verdict> {
        checkpoints
            .iter()
            .map(|c| {
                if c.step % 2 == 0 {
                    Verdict::keep("even step")
                } else {
                    Verdict::drop("odd step")
                }
            })
            .collect()
    }
}

/// The config this example writes: its own policy composed with ckpt's `LatestN`.
pub const CONFIG_JSON: &str = r#"{
  "enable_async_checkpointing": false,
  "preservation_policy": {
    "type": "AnyPreservationPolicy",
    "policies": [{"type": "KeepEvenSteps"}, {"type": "LatestN", "n": 1}]
  }
}
"#;

/// The steps this example saves.
pub const STEPS: std::ops::RangeInclusive<Step> = 1..=7;

/// Writes [`CONFIG_JSON`] to `config_file`, opens a manager on `root` with the config it reads
/// back, saves [`STEPS`] and returns the steps a fresh read-only manager then lists.
///
/// # Errors
/// From writing the config, reading it, or the manager.
pub fn run(root: &Path, config_file: &Path) -> Result<Vec<Step>, Box<dyn std::error::Error>> {
    std::fs::write(config_file, CONFIG_JSON)?;
    let options = ManagerConfig::from_file(config_file)?.into_options()?;
    let root = root.to_str().ok_or("the root path is not UTF-8")?;
    let mut mngr = CheckpointManager::open(root, options)?;
    for step in STEPS {
        mngr.save(
            step,
            Composite::new().json_value("state", serde_json::json!({ "step": step })),
            SaveOptions::default(),
        )?;
    }
    mngr.close()?;
    let reader = CheckpointManager::builder(root).read_only(true).build()?;
    Ok(reader.all_steps())
}

fn main() -> ExitCode {
    let tmp;
    let dir = match std::env::args_os().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => match tempfile::tempdir() {
            Ok(t) => {
                tmp = t;
                tmp.path().to_path_buf()
            }
            Err(e) => {
                eprintln!("custom_policy: error: cannot make a temporary directory: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    match run(&dir.join("root"), &dir.join("config.json")) {
        Ok(steps) => {
            println!("config:\n{CONFIG_JSON}");
            println!("saved steps {STEPS:?}; kept {steps:?}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "custom_policy: error: {}",
                ckpt_manager::core::ErrorChain(&*e)
            );
            ExitCode::FAILURE
        }
    }
}
