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
use ckpt_core::{Error, ErrorKind, Result};
use ckpt_policy::{PreservationPolicy, SaveDecisionPolicy};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Defines [`ManagerConfig`] from the option list: one optional field per data option, and the
/// two copies between a config and [`CheckpointManagerOptions`].
macro_rules! define_config {
    (
        data { $(
            $(#[$dm:meta])* $df:ident : $dt:ty = $dd:expr, $dw:literal
            $(, set($da:ident : $dat:ty) => $dc:expr)? ;
        )* }
        code { $($code:tt)* }
    ) => {
        /// The data part of [`CheckpointManagerOptions`], as read from or written to a JSON or
        /// TOML file: each option the file sets, and nothing for those it leaves out.
        ///
        /// Every field has the name and meaning of the [`CheckpointManagerOptions`] field of the
        /// same name (both come from one option list); `None` means "not set", so the option
        /// keeps its default ([`ManagerConfig::into_options`]) or the value of the options the
        /// config is applied to ([`ManagerConfig::apply_to`]). Policies are written as their
        /// typetag form, `{"type": "LatestN", "n": 3}` (any policy registered with
        /// `#[typetag::serde]`, including a third-party crate's, as long as the program links
        /// that crate). `best_mode` is `"min"` or `"max"`; `atomicity` is `"auto"`,
        /// `"atomic_rename"` or `"commit_file"`. `save_interval_steps`,
        /// `writer_lease_ttl_secs`, `async_staging_max_bytes`, `direct_io_min_bytes` and
        /// `write_behind_min_bytes` are a number, or `false` (or JSON `null`) for off — TOML has no null. Unknown fields, at the top level and inside
        /// policies, are rejected.
        ///
        /// Not part of a config (they are code, not data): `step_name_format`, `retry`,
        /// `clock`, `preemption`, `progress`, `handlers`, `coordinator` and
        /// `multiprocessing_options`; [`ManagerConfig::into_options`] leaves them at
        /// their defaults and [`ManagerConfig::apply_to`] keeps those of the options it is
        /// applied to.
        #[derive(Debug, Default, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ManagerConfig {
            $(
                #[doc = concat!("[`CheckpointManagerOptions::", stringify!($df), "`], when set.")]
                #[serde(default, skip_serializing_if = "Option::is_none", with = $dw)]
                pub $df: Option<$dt>,
            )*
            /// [`CheckpointManagerOptions::save_decision_policy`], when set; e.g.
            /// `{"type": "FixedIntervalPolicy", "interval": 1000}`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub save_decision_policy: Option<Box<dyn SaveDecisionPolicy>>,
            /// [`CheckpointManagerOptions::preservation_policy`], when set; e.g.
            /// `{"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}]}`.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub preservation_policy: Option<Box<dyn PreservationPolicy>>,
        }

        impl ManagerConfig {
            /// Writes every option this config sets into `o`.
            fn write_into(self, o: &mut CheckpointManagerOptions) {
                $( if let Some(v) = self.$df { o.$df = v; } )*
                if let Some(p) = self.save_decision_policy {
                    o.save_decision_policy = Some(Arc::from(p));
                }
                if let Some(p) = self.preservation_policy {
                    o.preservation_policy = Some(Arc::from(p));
                }
            }

            /// The data options of `options` that differ from the defaults (policies apart).
            fn data_of(options: &CheckpointManagerOptions) -> ManagerConfig {
                let d = CheckpointManagerOptions::default();
                ManagerConfig {
                    $( $df: (options.$df != d.$df).then(|| options.$df.clone()), )*
                    save_decision_policy: None,
                    preservation_policy: None,
                }
            }
        }
    };
}

crate::option_list::manager_options!(define_config);

mod form;

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
        let config: ManagerConfig =
            serde_json::from_str(text).map_err(|e| json_error(CONFIG, e))?;
        config.check()?;
        Ok(config)
    }

    /// Reads a config from TOML text (the same fields as JSON; policies as tables or inline
    /// tables with a `type` key) and checks its policies.
    ///
    /// # Errors
    /// As [`ManagerConfig::from_json_str`].
    pub fn from_toml_str(text: &str) -> Result<ManagerConfig> {
        let config: ManagerConfig =
            toml::from_str(text).map_err(|e| toml_error(CONFIG, text, e))?;
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

    /// Manager options with this config's values and the defaults of
    /// [`CheckpointManagerOptions::default`] for every option it does not set (and for what a
    /// config cannot hold: `step_name_format`, `retry`, `clock`, `preemption`, `progress`, `handlers`),
    /// validated.
    ///
    /// # Errors
    /// `InvalidConfig` from [`CheckpointManagerOptions::validate`], e.g. `preservation_policy`
    /// together with `max_to_keep`, or `keep_period` 0.
    pub fn into_options(self) -> Result<CheckpointManagerOptions> {
        self.apply_to(CheckpointManagerOptions::default())
    }

    /// `base` with the options this config sets replaced by the config's values, validated.
    /// What a config cannot hold (`clock`, `preemption`, `progress`, `handlers`, `retry`,
    /// `step_name_format`) stays as in `base`.
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
        if self.preservation_policy.is_some() {
            base.max_to_keep = None;
            base.keep_period = None;
            base.keep_time_interval_secs = None;
        }
        if self.max_to_keep.is_some()
            || self.keep_period.is_some()
            || self.keep_time_interval_secs.is_some()
        {
            base.preservation_policy = None;
        }
        if self.save_interval_steps.is_some() || self.save_on_steps.is_some() {
            base.save_decision_policy = None;
        }
        if self.step_prefix.is_some() || self.step_format_fixed_length.is_some() {
            base.step_name_format = None;
        }
        self.write_into(&mut base);
        base.validate()?;
        Ok(base)
    }

    /// The config of `options`: every data option whose value differs from the default, and the
    /// policies, copied through their serde form. `into_options` of it gives `options` back (but
    /// for what a config cannot hold: `retry`, `clock`, `preemption`, `progress`, `handlers`).
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
            save_decision_policy,
            preservation_policy,
            ..ManagerConfig::data_of(options)
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
    fn an_empty_config_gives_the_default_options() {
        let d = CheckpointManagerOptions::default();
        for options in [
            ManagerConfig::default().into_options().unwrap(),
            ManagerConfig::from_json_str("{}")
                .unwrap()
                .into_options()
                .unwrap(),
            ManagerConfig::from_toml_str("")
                .unwrap()
                .into_options()
                .unwrap(),
        ] {
            assert_eq!(options.save_interval_steps, Some(1));
            assert_eq!(options.save_interval_steps, d.save_interval_steps);
            assert_eq!(options.async_timeout_secs, d.async_timeout_secs);
            assert_eq!(options.writer_lease_ttl_secs, d.writer_lease_ttl_secs);
            assert!(options.create && options.verify_checksums);
        }
        // Nothing set: the config writes as an empty object.
        assert_eq!(ManagerConfig::default().to_json_string().unwrap(), "{}");
    }

    #[test]
    fn off_values_and_atomicity_strings() {
        let c = ManagerConfig::from_toml_str(
            "save_interval_steps = false\natomicity = \"commit_file\"\nbest_mode = \"min\"\nwriter_lease_ttl_secs = false",
        )
        .unwrap();
        assert_eq!(c.save_interval_steps, Some(None));
        assert_eq!(c.writer_lease_ttl_secs, Some(None));
        assert_eq!(c.atomicity, Some(ckpt_storage::AtomicityMode::CommitFile));
        assert_eq!(c.best_mode, Some(ckpt_policy::BestMode::Min));
        let o = c.into_options().unwrap();
        assert_eq!(o.save_interval_steps, None);
        assert_eq!(o.writer_lease_ttl_secs, None);
        let c = ManagerConfig::from_json_str(r#"{"save_interval_steps": null}"#).unwrap();
        assert_eq!(c.save_interval_steps, Some(None));
        let e = ManagerConfig::from_json_str(r#"{"save_interval_steps": true}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let e = ManagerConfig::from_json_str(r#"{"atomicity": "sometimes"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("sometimes"), "{e}");
    }

    #[test]
    fn from_options_round_trips_through_toml() {
        let options = CheckpointManagerOptions {
            save_interval_steps: None,
            max_to_keep: Some(4),
            step_prefix: Some("run".into()),
            wait_for_writer_secs: 7,
            writer_lease_ttl_secs: Some(90),
            atomicity: ckpt_storage::AtomicityMode::CommitFile,
            ..Default::default()
        };
        let text = ManagerConfig::from_options(&options)
            .unwrap()
            .to_toml_string()
            .unwrap();
        let back = ManagerConfig::from_toml_str(&text)
            .unwrap()
            .into_options()
            .unwrap();
        assert_eq!(back.save_interval_steps, None, "{text}");
        assert_eq!(back.max_to_keep, Some(4));
        assert_eq!(back.step_prefix.as_deref(), Some("run"));
        assert_eq!(back.wait_for_writer_secs, 7);
        assert_eq!(back.writer_lease_ttl_secs, Some(90));
        assert_eq!(back.atomicity, ckpt_storage::AtomicityMode::CommitFile);
        // Only what differs from the defaults is written.
        assert!(!text.contains("create"), "{text}");
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
