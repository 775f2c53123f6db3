//! The case options (cases README, "options") as `CheckpointManagerOptions`.

use ckpt_manager::core::{Error, Result};
use ckpt_manager::policy::{
    preservation_policy_from_json, save_decision_policy_from_json, BestMode,
};
use ckpt_manager::CheckpointManagerOptions;
use serde_json::Value;
use std::sync::Arc;

/// Builds manager options from a case's `options` object. An absent or null option takes its
/// default.
///
/// # Errors
/// `InvalidConfig` for values the options cannot hold (a negative `max_to_keep`, a `best_mode`
/// other than `min`/`max`, a policy that does not deserialize) or an unknown option.
pub fn from_json(v: &Value) -> Result<CheckpointManagerOptions> {
    let obj = v
        .as_object()
        .ok_or_else(|| Error::invalid_config("options must be an object"))?;
    // The cases' saves are synchronous (cases README: "Saves are synchronous").
    let mut o = CheckpointManagerOptions {
        enable_async_checkpointing: false,
        ..Default::default()
    };
    for (key, value) in obj {
        if value.is_null() {
            continue;
        }
        match key.as_str() {
            "max_to_keep" => o.max_to_keep = Some(non_negative(key, value)?),
            "keep_period" => o.keep_period = Some(non_negative(key, value)?),
            "best_fn_metric" => o.best_metric = Some(string(key, value)?),
            "best_mode" => o.best_mode = string(key, value)?.parse::<BestMode>()?,
            "keep_checkpoints_without_metrics" => {
                o.keep_checkpoints_without_metrics = boolean(key, value)?
            }
            "save_interval_steps" => o.save_interval_steps = Some(non_negative(key, value)?),
            "save_on_steps" => {
                let list = value.as_array().ok_or_else(|| bad(key, value))?;
                o.save_on_steps = list
                    .iter()
                    .map(|s| non_negative(key, s))
                    .collect::<Result<_>>()?;
            }
            "step_prefix" => o.step_prefix = Some(string(key, value)?),
            "step_format_fixed_length" => {
                o.step_format_fixed_length = Some(non_negative(key, value)? as usize)
            }
            "todelete_subdir" => o.todelete_subdir = Some(string(key, value)?),
            "prevent_write_metrics" => o.prevent_write_metrics = boolean(key, value)?,
            "cleanup_tmp_directories" => o.cleanup_tmp_directories = boolean(key, value)?,
            "read_only" => o.read_only = boolean(key, value)?,
            "create" => o.create = boolean(key, value)?,
            "save_root_metadata" => o.save_root_metadata = boolean(key, value)?,
            "preservation_policy" => {
                o.preservation_policy = Some(Arc::from(preservation_policy_from_json(
                    &value.to_string(),
                )?))
            }
            "save_decision_policy" => {
                o.save_decision_policy = Some(Arc::from(save_decision_policy_from_json(
                    &value.to_string(),
                )?))
            }
            other => return Err(Error::invalid_config(format!("unknown option {other:?}"))),
        }
    }
    Ok(o)
}

fn bad(key: &str, value: &Value) -> Error {
    Error::invalid_config(format!("option {key} cannot be {value}"))
}

fn non_negative(key: &str, value: &Value) -> Result<u64> {
    value.as_u64().ok_or_else(|| bad(key, value))
}

fn string(key: &str, value: &Value) -> Result<String> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(key, value))
}

fn boolean(key: &str, value: &Value) -> Result<bool> {
    value.as_bool().ok_or_else(|| bad(key, value))
}
