//! `ManagerConfig`: the manager options that can be written in a JSON or TOML file, policies
//! included.
//!
//! ```
//! use ckpt_manager::ManagerConfig;
//! # #[cfg(not(all(feature = "latest", feature = "best")))] fn main() {}
//! # #[cfg(all(feature = "latest", feature = "best"))]
//! # fn main() -> ckpt_manager::Result<()> {
//! let config = ManagerConfig::from_toml_str(r#"
//!     save_interval_steps = 100
//!     step_prefix = "ckpt"
//!
//!     [preservation_policy]
//!     type = "AnyPreservationPolicy"
//!     policies = [
//!         { type = "LatestN", n = 3 },
//!         { type = "BestN", metric = "val_loss", mode = "min", n = 2 },
//!     ]
//! "#)?;
//! let options = config.into_options()?;
//! assert_eq!(options.save_interval_steps, Some(100));
//! assert!(options.preservation_policy.is_some());
//! # Ok(()) }
//! ```

use crate::CheckpointManagerOptions;
use ckpt_core::{Error, ErrorKind, Metrics, Result};
use ckpt_policy::{BestMode, PreservationPolicy, SaveDecisionPolicy};
use ckpt_storage::AtomicityMode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

/// The serializable part of [`CheckpointManagerOptions`], as read from or written to a JSON or
/// TOML file.
///
/// Every field has the name, meaning and default of the [`CheckpointManagerOptions`] field of the
/// same name; a field left out of a file takes that default. Policies are written as their
/// typetag form, `{"type": "LatestN", "n": 3}` (any policy registered with `#[typetag::serde]`,
/// including a third-party crate's, as long as the program links that crate). `best_mode` is
/// `"min"` or `"max"`; `atomicity` is `"auto"`, `"atomic_rename"` or `"commit_file"`.
/// `save_interval_steps` is a number of steps, or `false` (or JSON `null`) to turn the interval
/// off — TOML has no null. Unknown fields, at the top level and inside policies, are rejected.
///
/// Not part of a config (they are code, not data): `step_name_format`, `clock`, `preemption` and
/// `handlers`; [`ManagerConfig::into_options`] leaves them at their defaults and
/// [`ManagerConfig::apply_to`] keeps those of the options it is applied to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagerConfig {
    /// See [`CheckpointManagerOptions::save_interval_steps`] (steps; `false`/`null`: off).
    #[serde(
        default = "default_interval",
        serialize_with = "interval::serialize",
        deserialize_with = "interval::deserialize"
    )]
    pub save_interval_steps: Option<u64>,
    /// See [`CheckpointManagerOptions::save_on_steps`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub save_on_steps: Vec<u64>,
    /// See [`CheckpointManagerOptions::max_to_keep`] (checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_to_keep: Option<u64>,
    /// See [`CheckpointManagerOptions::keep_period`] (steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_period: Option<u64>,
    /// See [`CheckpointManagerOptions::keep_time_interval_secs`] (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_time_interval_secs: Option<u64>,
    /// See [`CheckpointManagerOptions::best_metric`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_metric: Option<String>,
    /// See [`CheckpointManagerOptions::best_mode`] (`"min"` or `"max"`, default `"max"`).
    #[serde(default = "default_best_mode")]
    pub best_mode: BestMode,
    /// See [`CheckpointManagerOptions::keep_checkpoints_without_metrics`] (default true).
    #[serde(default = "default_true")]
    pub keep_checkpoints_without_metrics: bool,
    /// See [`CheckpointManagerOptions::allow_missing_best_metric`] (default false).
    #[serde(default)]
    pub allow_missing_best_metric: bool,
    /// See [`CheckpointManagerOptions::step_prefix`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_prefix: Option<String>,
    /// See [`CheckpointManagerOptions::step_format_fixed_length`] (digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_format_fixed_length: Option<usize>,
    /// See [`CheckpointManagerOptions::create`] (default true).
    #[serde(default = "default_true")]
    pub create: bool,
    /// See [`CheckpointManagerOptions::read_only`].
    #[serde(default)]
    pub read_only: bool,
    /// See [`CheckpointManagerOptions::cleanup_tmp_directories`].
    #[serde(default)]
    pub cleanup_tmp_directories: bool,
    /// See [`CheckpointManagerOptions::todelete_subdir`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub todelete_subdir: Option<String>,
    /// See [`CheckpointManagerOptions::save_root_metadata`] (default true).
    #[serde(default = "default_true")]
    pub save_root_metadata: bool,
    /// See [`CheckpointManagerOptions::root_metadata`] (a JSON object / TOML table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_metadata: Option<Metrics>,
    /// See [`CheckpointManagerOptions::prevent_write_metrics`].
    #[serde(default)]
    pub prevent_write_metrics: bool,
    /// See [`CheckpointManagerOptions::atomicity`] (`"auto"`, `"atomic_rename"`, `"commit_file"`).
    #[serde(default, with = "atomicity")]
    pub atomicity: AtomicityMode,
    /// See [`CheckpointManagerOptions::lightweight_initialize`].
    #[serde(default)]
    pub lightweight_initialize: bool,
    /// See [`CheckpointManagerOptions::enable_async_checkpointing`] (default true).
    #[serde(default = "default_true")]
    pub enable_async_checkpointing: bool,
    /// See [`CheckpointManagerOptions::async_timeout_secs`] (seconds, default 1200).
    #[serde(default = "default_async_timeout_secs")]
    pub async_timeout_secs: u64,
    /// See [`CheckpointManagerOptions::enable_background_delete`].
    #[serde(default)]
    pub enable_background_delete: bool,
    /// See [`CheckpointManagerOptions::verify_checksums`] (default true).
    #[serde(default = "default_true")]
    pub verify_checksums: bool,
    /// See [`CheckpointManagerOptions::save_decision_policy`]; e.g.
    /// `{"type": "FixedIntervalPolicy", "interval": 1000}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_decision_policy: Option<Box<dyn SaveDecisionPolicy>>,
    /// See [`CheckpointManagerOptions::preservation_policy`]; e.g.
    /// `{"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preservation_policy: Option<Box<dyn PreservationPolicy>>,
    /// The top-level keys the text held (`None`: built in code, every field counts as set). Used
    /// by [`ManagerConfig::apply_to`].
    #[serde(skip)]
    set_fields: Option<BTreeSet<String>>,
}

fn default_interval() -> Option<u64> {
    Some(1)
}

fn default_true() -> bool {
    true
}

fn default_async_timeout_secs() -> u64 {
    CheckpointManagerOptions::default().async_timeout_secs
}

fn default_best_mode() -> BestMode {
    BestMode::Max
}

/// `save_interval_steps`: a number, or `false`/`null` for off (TOML has no null, so `None` is
/// written as `false`).
mod interval {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Steps(u64),
        Off(bool),
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64(*n),
            None => s.serialize_bool(false),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Repr>::deserialize(d)? {
            None | Some(Repr::Off(false)) => Ok(None),
            Some(Repr::Steps(n)) => Ok(Some(n)),
            Some(Repr::Off(true)) => Err(serde::de::Error::custom(
                "save_interval_steps must be a number of steps, or false (or null) for off",
            )),
        }
    }
}

/// `atomicity` as Orbax's strings.
mod atomicity {
    use ckpt_storage::AtomicityMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &AtomicityMode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<AtomicityMode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<AtomicityMode>()
            .map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl Default for ManagerConfig {
    /// The defaults of [`CheckpointManagerOptions::default`].
    fn default() -> Self {
        ManagerConfig {
            save_interval_steps: default_interval(),
            save_on_steps: Vec::new(),
            max_to_keep: None,
            keep_period: None,
            keep_time_interval_secs: None,
            best_metric: None,
            best_mode: BestMode::Max,
            keep_checkpoints_without_metrics: true,
            allow_missing_best_metric: false,
            step_prefix: None,
            step_format_fixed_length: None,
            create: true,
            read_only: false,
            cleanup_tmp_directories: false,
            todelete_subdir: None,
            save_root_metadata: true,
            root_metadata: None,
            prevent_write_metrics: false,
            atomicity: AtomicityMode::Auto,
            lightweight_initialize: false,
            enable_async_checkpointing: true,
            async_timeout_secs: default_async_timeout_secs(),
            enable_background_delete: false,
            verify_checksums: true,
            save_decision_policy: None,
            preservation_policy: None,
            set_fields: None,
        }
    }
}

/// The file formats a config or policy file may be in, chosen by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Toml,
}

impl Format {
    fn of(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(Format::Json),
            Some(e) if e.eq_ignore_ascii_case("toml") => Ok(Format::Toml),
            _ => Err(Error::invalid_config(
                "cannot tell the file's format: its name must end in .json or .toml",
            )
            .with_path(path.display().to_string())),
        }
    }
}

/// Reads `path` as UTF-8 text.
fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::InvalidConfig
        };
        Error::new(kind, "cannot read the file")
            .with_path(path.display().to_string())
            .with_source(e)
    })
}

/// A serde_json error as `InvalidConfig`: the message says the line and column.
fn json_error(what: &str, e: serde_json::Error) -> Error {
    Error::invalid_config(format!("cannot read {what}: {e}"))
}

/// A toml error as `InvalidConfig` on one line: its message and the line (and column) of `text`
/// where it happened.
fn toml_error(what: &str, text: &str, e: toml::de::Error) -> Error {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let line_of = |at: usize| text[..at.min(text.len())].matches('\n').count() + 1;
            let (first, last) = (line_of(span.start), line_of(span.end.saturating_sub(1)));
            // typetag reads a policy's table as a whole: its errors span the table.
            let place = if last > first {
                format!("in lines {first}-{last}")
            } else {
                let before = &text[..span.start.min(text.len())];
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("at line {first} column {column}")
            };
            Error::invalid_config(format!("cannot read {what}: {message} {place}"))
        }
        None => Error::invalid_config(format!("cannot read {what}: {message}")),
    }
}

/// The top-level keys of a JSON object text (empty for anything else).
fn json_keys(text: &str) -> BTreeSet<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}

/// The top-level keys of a TOML document.
fn toml_keys(text: &str) -> BTreeSet<String> {
    match toml::from_str::<toml::Table>(text) {
        Ok(t) => t.keys().cloned().collect(),
        Err(_) => BTreeSet::new(),
    }
}

const CONFIG: &str = "the manager config";
const POLICY: &str = "the preservation policy";

impl ManagerConfig {
    /// Reads a config from JSON text, e.g.
    /// `{"save_interval_steps": 100, "preservation_policy": {"type": "LatestN", "n": 3}}`, and
    /// checks its policies.
    ///
    /// # Errors
    /// `InvalidConfig` naming the field, line and column for text that is not such a config
    /// (unknown field, unknown policy `type` — e.g. a family whose Cargo feature is off —, wrong
    /// type), or the policy whose own validation fails (e.g. an interval of 0).
    pub fn from_json_str(text: &str) -> Result<ManagerConfig> {
        let mut config: ManagerConfig =
            serde_json::from_str(text).map_err(|e| json_error(CONFIG, e))?;
        config.set_fields = Some(json_keys(text));
        config.check()?;
        Ok(config)
    }

    /// Reads a config from TOML text (the same fields as JSON; policies as tables or inline
    /// tables with a `type` key) and checks its policies.
    ///
    /// # Errors
    /// As [`ManagerConfig::from_json_str`].
    pub fn from_toml_str(text: &str) -> Result<ManagerConfig> {
        let mut config: ManagerConfig =
            toml::from_str(text).map_err(|e| toml_error(CONFIG, text, e))?;
        config.set_fields = Some(toml_keys(text));
        config.check()?;
        Ok(config)
    }

    /// Reads a config from the file at `path`: JSON if its name ends in `.json`, TOML if it
    /// ends in `.toml`.
    ///
    /// # Errors
    /// `NotFound` when there is no such file; `InvalidConfig` for another extension, a file that
    /// cannot be read as UTF-8 text, or content rejected as by [`ManagerConfig::from_json_str`];
    /// each error names the file as its path.
    pub fn from_file(path: impl AsRef<Path>) -> Result<ManagerConfig> {
        let path = path.as_ref();
        let format = Format::of(path)?;
        let text = read_text(path)?;
        let parsed = match format {
            Format::Json => ManagerConfig::from_json_str(&text),
            Format::Toml => ManagerConfig::from_toml_str(&text),
        };
        parsed.map_err(|e| e.with_path(path.display().to_string()))
    }

    /// The config as pretty JSON.
    ///
    /// # Errors
    /// `InvalidConfig` when a policy cannot be serialized.
    pub fn to_json_string(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid_config(format!("cannot write {CONFIG} as JSON: {e}")))
    }

    /// The config as TOML.
    ///
    /// # Errors
    /// `InvalidConfig` when a policy cannot be serialized, or holds something TOML cannot say
    /// (e.g. a JSON `null` inside `root_metadata`).
    pub fn to_toml_string(&self) -> Result<String> {
        toml::to_string(self)
            .map_err(|e| Error::invalid_config(format!("cannot write {CONFIG} as TOML: {e}")))
    }

    fn check(&self) -> Result<()> {
        if let Some(p) = &self.save_decision_policy {
            p.validate()
                .map_err(|e| prefix_message(e, "save_decision_policy"))?;
        }
        if let Some(p) = &self.preservation_policy {
            p.validate()
                .map_err(|e| prefix_message(e, "preservation_policy"))?;
        }
        Ok(())
    }

    /// Whether the text this config came from set `field` (always true for a config built in
    /// code).
    fn is_set(&self, field: &str) -> bool {
        self.set_fields.as_ref().is_none_or(|s| s.contains(field))
    }

    /// Manager options with this config's values and the defaults of
    /// [`CheckpointManagerOptions::default`] for what a config cannot hold (`step_name_format`,
    /// `clock`, `preemption`, `handlers`), validated.
    ///
    /// # Errors
    /// `InvalidConfig` from [`CheckpointManagerOptions::validate`], e.g. `preservation_policy`
    /// together with `max_to_keep`, or `keep_period` 0.
    pub fn into_options(self) -> Result<CheckpointManagerOptions> {
        let mut options = CheckpointManagerOptions::default();
        self.write_into(&mut options, true);
        options.validate()?;
        Ok(options)
    }

    /// `base` with the fields this config's text set replaced by the config's values (every
    /// field, for a config built in code), validated. What a config cannot hold (`clock`,
    /// `preemption`, `handlers`, `step_name_format`) stays as in `base`.
    ///
    /// Retention and save decisions are replaced as a whole: a config that sets
    /// `preservation_policy` clears `base`'s `max_to_keep`, `keep_period` and
    /// `keep_time_interval_secs`; one that sets any of those clears `base`'s
    /// `preservation_policy`; one that sets `save_interval_steps` or `save_on_steps` clears `base`'s
    /// `save_decision_policy`. A config that sets `step_prefix` or `step_format_fixed_length`
    /// clears `base`'s `step_name_format`.
    ///
    /// # Errors
    /// `InvalidConfig` from [`CheckpointManagerOptions::validate`].
    pub fn apply_to(self, mut base: CheckpointManagerOptions) -> Result<CheckpointManagerOptions> {
        if self.is_set("preservation_policy") {
            base.max_to_keep = None;
            base.keep_period = None;
            base.keep_time_interval_secs = None;
        }
        if ["max_to_keep", "keep_period", "keep_time_interval_secs"]
            .iter()
            .any(|f| self.is_set(f))
        {
            base.preservation_policy = None;
        }
        if self.is_set("save_interval_steps") || self.is_set("save_on_steps") {
            base.save_decision_policy = None;
        }
        if self.is_set("step_prefix") || self.is_set("step_format_fixed_length") {
            base.step_name_format = None;
        }
        self.write_into(&mut base, false);
        base.validate()?;
        Ok(base)
    }

    /// Writes the fields this config set (all, with `all`) into `o`.
    fn write_into(self, o: &mut CheckpointManagerOptions, all: bool) {
        let set = |f: &str| all || self.is_set(f);
        macro_rules! copy {
            ($($field:ident),* $(,)?) => {
                $( if set(stringify!($field)) { o.$field = self.$field.clone(); } )*
            };
        }
        copy!(
            save_interval_steps,
            save_on_steps,
            max_to_keep,
            keep_period,
            keep_time_interval_secs,
            best_metric,
            best_mode,
            keep_checkpoints_without_metrics,
            allow_missing_best_metric,
            step_prefix,
            step_format_fixed_length,
            create,
            read_only,
            cleanup_tmp_directories,
            todelete_subdir,
            save_root_metadata,
            root_metadata,
            prevent_write_metrics,
            atomicity,
            lightweight_initialize,
            enable_async_checkpointing,
            async_timeout_secs,
            enable_background_delete,
            verify_checksums,
        );
        let set_decision = set("save_decision_policy");
        let set_preservation = set("preservation_policy");
        if set_decision {
            o.save_decision_policy = self.save_decision_policy.map(Arc::from);
        }
        if set_preservation {
            o.preservation_policy = self.preservation_policy.map(Arc::from);
        }
    }

    /// The config of `options`: every serializable field, policies copied through their serde
    /// form. `clock`, `preemption` and `handlers` are not part of a config and are left out.
    ///
    /// # Errors
    /// `Unsupported` when `options` has a custom `step_name_format`, or a policy that cannot be
    /// serialized (a `ShouldSaveFnPolicy` closure) or read back (a policy type that is not
    /// registered in this program), naming the option.
    pub fn from_options(options: &CheckpointManagerOptions) -> Result<ManagerConfig> {
        if options.step_name_format.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "step_name_format is code and cannot be written in a config; use step_prefix and step_format_fixed_length",
            ));
        }
        let save_decision_policy = match &options.save_decision_policy {
            Some(p) => Some(copy_policy::<dyn SaveDecisionPolicy, _>(
                p.as_ref(),
                "save_decision_policy",
            )?),
            None => None,
        };
        let preservation_policy = match &options.preservation_policy {
            Some(p) => Some(copy_policy::<dyn PreservationPolicy, _>(
                p.as_ref(),
                "preservation_policy",
            )?),
            None => None,
        };
        Ok(ManagerConfig {
            save_interval_steps: options.save_interval_steps,
            save_on_steps: options.save_on_steps.clone(),
            max_to_keep: options.max_to_keep,
            keep_period: options.keep_period,
            keep_time_interval_secs: options.keep_time_interval_secs,
            best_metric: options.best_metric.clone(),
            best_mode: options.best_mode,
            keep_checkpoints_without_metrics: options.keep_checkpoints_without_metrics,
            allow_missing_best_metric: options.allow_missing_best_metric,
            step_prefix: options.step_prefix.clone(),
            step_format_fixed_length: options.step_format_fixed_length,
            create: options.create,
            read_only: options.read_only,
            cleanup_tmp_directories: options.cleanup_tmp_directories,
            todelete_subdir: options.todelete_subdir.clone(),
            save_root_metadata: options.save_root_metadata,
            root_metadata: options.root_metadata.clone(),
            prevent_write_metrics: options.prevent_write_metrics,
            atomicity: options.atomicity,
            lightweight_initialize: options.lightweight_initialize,
            enable_async_checkpointing: options.enable_async_checkpointing,
            async_timeout_secs: options.async_timeout_secs,
            enable_background_delete: options.enable_background_delete,
            verify_checksums: options.verify_checksums,
            save_decision_policy,
            preservation_policy,
            set_fields: None,
        })
    }
}

impl TryFrom<&CheckpointManagerOptions> for ManagerConfig {
    type Error = Error;

    /// As [`ManagerConfig::from_options`].
    fn try_from(options: &CheckpointManagerOptions) -> Result<ManagerConfig> {
        ManagerConfig::from_options(options)
    }
}

/// A copy of a policy through its serde (typetag) form.
fn copy_policy<T, P>(policy: &P, field: &str) -> Result<Box<T>>
where
    T: ?Sized,
    P: ?Sized + Serialize,
    Box<T>: serde::de::DeserializeOwned,
{
    let value = serde_json::to_value(policy).map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("{field} cannot be written in a config: {e}"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        Error::new(
            ErrorKind::Unsupported,
            format!("{field} cannot be read back from its config form: {e}"),
        )
    })
}

/// `e` with `field: ` put before its message (same kind, step, path).
fn prefix_message(e: Error, field: &str) -> Error {
    let mut out = Error::new(e.kind(), format!("{field}: {}", e.message()));
    if let Some(s) = e.step() {
        out = out.with_step(s);
    }
    if let Some(p) = e.path() {
        out = out.with_path(p.to_string());
    }
    out
}

/// Reads a preservation policy from JSON text, e.g. `{"type": "LatestN", "n": 3}`, and
/// validates it (as [`ckpt_policy::preservation_policy_from_json`]).
///
/// # Errors
/// `InvalidConfig` naming the line and column for text that is not such a policy (unknown
/// `type` or field, wrong type), or when the policy's validation fails.
pub fn preservation_policy_from_json_str(text: &str) -> Result<Box<dyn PreservationPolicy>> {
    let policy: Box<dyn PreservationPolicy> =
        serde_json::from_str(text).map_err(|e| json_error(POLICY, e))?;
    policy.validate()?;
    Ok(policy)
}

/// Reads a preservation policy from TOML text, e.g.
/// `type = "AnyPreservationPolicy"` then `policies = [{ type = "LatestN", n = 3 }]`, and
/// validates it.
///
/// # Errors
/// As [`preservation_policy_from_json_str`].
pub fn preservation_policy_from_toml_str(text: &str) -> Result<Box<dyn PreservationPolicy>> {
    let policy: Box<dyn PreservationPolicy> =
        toml::from_str(text).map_err(|e| toml_error(POLICY, text, e))?;
    policy.validate()?;
    Ok(policy)
}

/// Reads a preservation policy from the file at `path` (JSON if its name ends in `.json`, TOML
/// if `.toml`), as `ckpt gc --policy FILE` does.
///
/// # Errors
/// `NotFound` when there is no such file; `InvalidConfig` for another extension, unreadable
/// text, or content rejected as by [`preservation_policy_from_json_str`]; each error names the
/// file as its path.
pub fn preservation_policy_from_file(
    path: impl AsRef<Path>,
) -> Result<Box<dyn PreservationPolicy>> {
    let path = path.as_ref();
    let format = Format::of(path)?;
    let text = read_text(path)?;
    let parsed = match format {
        Format::Json => preservation_policy_from_json_str(&text),
        Format::Toml => preservation_policy_from_toml_str(&text),
    };
    parsed.map_err(|e| e.with_path(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_options_defaults() {
        let from_config = ManagerConfig::default().into_options().unwrap();
        let d = CheckpointManagerOptions::default();
        assert_eq!(from_config.save_interval_steps, d.save_interval_steps);
        assert_eq!(from_config.best_mode, d.best_mode);
        assert_eq!(from_config.create, d.create);
        assert_eq!(
            from_config.enable_async_checkpointing,
            d.enable_async_checkpointing
        );
        assert_eq!(from_config.async_timeout_secs, d.async_timeout_secs);
        assert_eq!(from_config.verify_checksums, d.verify_checksums);
        assert_eq!(
            from_config.enable_background_delete,
            d.enable_background_delete
        );
        assert_eq!(from_config.save_root_metadata, d.save_root_metadata);
        assert_eq!(
            from_config.keep_checkpoints_without_metrics,
            d.keep_checkpoints_without_metrics
        );
        let empty = ManagerConfig::from_json_str("{}")
            .unwrap()
            .into_options()
            .unwrap();
        assert_eq!(empty.save_interval_steps, Some(1));
        let empty = ManagerConfig::from_toml_str("")
            .unwrap()
            .into_options()
            .unwrap();
        assert_eq!(empty.save_interval_steps, Some(1));
    }

    #[test]
    fn interval_off_and_atomicity_strings() {
        let c = ManagerConfig::from_toml_str(
            "save_interval_steps = false\natomicity = \"commit_file\"\nbest_mode = \"min\"",
        )
        .unwrap();
        assert_eq!(c.save_interval_steps, None);
        assert_eq!(c.atomicity, AtomicityMode::CommitFile);
        assert_eq!(c.best_mode, BestMode::Min);
        let c = ManagerConfig::from_json_str(r#"{"save_interval_steps": null}"#).unwrap();
        assert_eq!(c.save_interval_steps, None);
        let e = ManagerConfig::from_json_str(r#"{"save_interval_steps": true}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let e = ManagerConfig::from_json_str(r#"{"atomicity": "sometimes"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("sometimes"), "{e}");
    }

    #[test]
    fn toml_errors_name_field_and_line() {
        let e = ManagerConfig::from_toml_str("max_to_keep = 3\nmax_to_kepe = 4\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("max_to_kepe"), "{e}");
        assert!(e.message().contains("line 2"), "{e}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }

    #[test]
    fn apply_to_replaces_only_what_the_text_sets() {
        let base = CheckpointManagerOptions {
            save_interval_steps: Some(10),
            max_to_keep: Some(3),
            step_prefix: Some("run".into()),
            ..Default::default()
        };
        let c = ManagerConfig::from_json_str(
            r#"{"preservation_policy": {"type": "PreserveAll"}, "cleanup_tmp_directories": true}"#,
        )
        .unwrap();
        let o = c.apply_to(base).unwrap();
        assert_eq!(o.save_interval_steps, Some(10));
        assert_eq!(o.step_prefix.as_deref(), Some("run"));
        assert_eq!(o.max_to_keep, None);
        assert!(o.preservation_policy.is_some());
        assert!(o.cleanup_tmp_directories);
    }
}
