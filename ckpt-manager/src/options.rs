//! `CheckpointManagerOptions` and its builder.

use ckpt_core::{Error, NameFormat, Result, StandardNameFormat};
use ckpt_handlers::CheckpointHandler;
use ckpt_policy::BestMode;
use ckpt_storage::Store;
use std::sync::Arc;

/// Defines [`CheckpointManagerOptions`] and its `Default` from the option list.
macro_rules! define_options {
    (
        data { $(
            $(#[$dm:meta])* $df:ident : $dt:ty = $dd:expr, $dw:literal
            $(, set($da:ident : $dat:ty) => $dc:expr)? ;
        )* }
        code { $(
            $(#[$cm:meta])* $cf:ident : $ct:ty = $cd:expr
            $(, set($ca:ident : $cat:ty) => $cc:expr)? ;
        )* }
    ) => {
        /// How a manager behaves: when it saves, what it keeps, how it names and commits steps.
        ///
        /// Field names and defaults are Orbax `CheckpointManagerOptions`' (spec §5.1), restricted
        /// to what ckpt implements; deviations are noted per field. Build it with
        /// [`CheckpointManagerOptions::default`] and struct update syntax, or through
        /// [`crate::CheckpointManager::builder`]. Every option is listed once, in
        /// `option_list.rs`, from which this struct, its defaults, the builder's setters and
        /// the config file's fields come.
        #[derive(Debug, Clone)]
        pub struct CheckpointManagerOptions {
            $( $(#[$dm])* pub $df: $dt, )*
            $( $(#[$cm])* pub $cf: $ct, )*
        }

        impl Default for CheckpointManagerOptions {
            fn default() -> Self {
                CheckpointManagerOptions {
                    $( $df: $dd, )*
                    $( $cf: $cd, )*
                }
            }
        }

        impl CheckpointManagerBuilder {
            $( $(
                #[doc = concat!("Sets [`CheckpointManagerOptions::", stringify!($df), "`].")]
                pub fn $df(mut self, $da: $dat) -> Self {
                    self.options.$df = $dc;
                    self
                }
            )? )*
            $( $(
                #[doc = concat!("Sets [`CheckpointManagerOptions::", stringify!($cf), "`].")]
                pub fn $cf(mut self, $ca: $cat) -> Self {
                    self.options.$cf = $cc;
                    self
                }
            )? )*
        }
    };
}

crate::option_list::manager_options!(define_options);

impl CheckpointManagerOptions {
    /// The name format these options describe.
    ///
    /// # Errors
    /// `InvalidConfig` for a step prefix that cannot be part of a directory name.
    pub fn name_format(&self) -> Result<Arc<dyn NameFormat>> {
        if let Some(f) = &self.step_name_format {
            return Ok(f.clone());
        }
        Ok(Arc::new(StandardNameFormat::new(
            self.step_prefix.as_deref(),
            self.step_format_fixed_length,
        )?))
    }

    /// The options a read-only manager really uses: Orbax's `__post_init__` rewrites (spec §5.1)
    /// clear the interval, retention, creation, cleanup and todelete options.
    pub(crate) fn effective(&self) -> CheckpointManagerOptions {
        let mut o = self.clone();
        if o.read_only {
            o.save_interval_steps = None; // Orbax sets 0; a read-only manager never asks the policy
            o.max_to_keep = None;
            o.keep_time_interval_secs = None;
            o.keep_period = None;
            o.create = false;
            o.cleanup_tmp_directories = false;
            o.save_on_steps.clear();
            o.todelete_subdir = None;
        }
        o
    }

    /// Checks the options (spec §4.3 validation, deviation D4).
    ///
    /// # Errors
    /// `InvalidConfig` naming the option: `save_interval_steps` 0 (not read-only), `keep_period` 0,
    /// a policy whose own validation fails, `preservation_policy` together with `max_to_keep`,
    /// `keep_period` or `keep_time_interval_secs`, a `todelete_subdir` that is not one path
    /// component or parses as a step name, a `root_metadata` nested deeper than the root
    /// metadata file could be read back with (`ckpt_core::pyjson::MAX_NESTING_DEPTH` - 1 levels),
    /// `coordination_timeout_secs` 0 with a `coordinator`.
    pub fn validate(&self) -> Result<()> {
        if !self.read_only
            && self.save_interval_steps == Some(0)
            && self.save_decision_policy.is_none()
        {
            return Err(Error::invalid_config("save_interval_steps must not be 0"));
        }
        if self.keep_period == Some(0) {
            return Err(Error::invalid_config("keep_period must not be 0"));
        }
        if let Some(p) = &self.preservation_policy {
            p.validate()?;
            let conflicting = !self.read_only
                && (self.max_to_keep.is_some_and(|n| n > 0)
                    || self.keep_period.is_some_and(|n| n > 0)
                    || self.keep_time_interval_secs.is_some_and(|n| n > 0));
            if conflicting {
                return Err(Error::invalid_config(
                    "preservation_policy and max_to_keep / keep_period / keep_time_interval_secs are mutually exclusive",
                ));
            }
        }
        if let Some(p) = &self.save_decision_policy {
            p.validate()?;
        }
        if let Some(d) = &self.todelete_subdir {
            ckpt_core::validate_item_name(d).map_err(|_| {
                Error::invalid_config(format!("todelete_subdir {d:?} must be one directory name"))
            })?;
            if self.name_format()?.parse_name(d).is_some() {
                return Err(Error::invalid_config(format!(
                    "todelete_subdir {d:?} would be read as a step"
                )));
            }
        }
        if self.coordination_timeout_secs == 0 && self.coordinator.is_some() {
            return Err(Error::invalid_config(
                "coordination_timeout_secs must be at least 1 (seconds each process waits for the others)",
            ));
        }
        if self.writer_lease_ttl_secs == Some(0) {
            return Err(Error::invalid_config(
                "writer_lease_ttl_secs must be at least 1 (or None to turn the writer lease off)",
            ));
        }
        if let Some(m) = &self.root_metadata {
            // Written inside `_ROOT_METADATA`'s top-level object: one level less than a file.
            let max = ckpt_core::pyjson::MAX_NESTING_DEPTH;
            let depth = crate::save::map_nesting_depth(m, max);
            ckpt_core::pyjson::check_nesting_depth("root_metadata", depth, max - 1)
                .map_err(|e| Error::invalid_config(e.message()))?;
        }
        if let Some(m) = &self.best_metric {
            if m.is_empty() {
                return Err(Error::invalid_config("best_metric must not be empty"));
            }
        }
        self.name_format()?;
        Ok(())
    }
}

/// Builds a [`crate::CheckpointManager`]: `CheckpointManager::builder("runs/exp1").max_to_keep(3).build()?`.
#[derive(Debug)]
pub struct CheckpointManagerBuilder {
    root: RootSpec,
    options: CheckpointManagerOptions,
}

#[derive(Debug)]
pub(crate) enum RootSpec {
    Uri(String),
    Store(Arc<dyn Store>),
}

impl CheckpointManagerBuilder {
    pub(crate) fn new(root: RootSpec) -> Self {
        CheckpointManagerBuilder {
            root,
            options: CheckpointManagerOptions::default(),
        }
    }

    /// Replaces all options at once, including those set by the setters called before it (a
    /// `.read_only(true)` before `.options(o)` is undone by `o`'s `read_only`): call it first,
    /// then the setters that should win, e.g.
    /// `builder(root).options(config.into_options()?).read_only(true)`.
    pub fn options(mut self, options: CheckpointManagerOptions) -> Self {
        self.options = options;
        self
    }

    /// Ranks checkpoints by `metric`, `mode` deciding whether lower or higher is better; sets
    /// [`CheckpointManagerOptions::best_metric`] and [`CheckpointManagerOptions::best_mode`].
    pub fn best_metric(mut self, metric: impl Into<String>, mode: BestMode) -> Self {
        self.options.best_metric = Some(metric.into());
        self.options.best_mode = mode;
        self
    }

    /// Uses `handler` for item `item`; see [`CheckpointManagerOptions::handlers`].
    pub fn handler(mut self, item: impl Into<String>, handler: Arc<dyn CheckpointHandler>) -> Self {
        self.options.handlers.push((item.into(), handler));
        self
    }

    /// Reports how far each save and restore has got to `observer`, a closure called with
    /// every [`crate::Progress`] report on the thread doing the work (the caller's, or the
    /// background save thread); sets [`CheckpointManagerOptions::progress`].
    pub fn on_progress(
        mut self,
        observer: impl Fn(&crate::Progress) + Send + Sync + 'static,
    ) -> Self {
        self.options.progress = Some(Arc::new(crate::ProgressFn(observer)));
        self
    }

    /// Opens the root and builds the manager.
    ///
    /// # Errors
    /// As [`crate::CheckpointManager::open`].
    pub fn build(self) -> Result<crate::CheckpointManager> {
        match self.root {
            RootSpec::Uri(uri) => crate::CheckpointManager::open(&uri, self.options),
            RootSpec::Store(store) => crate::CheckpointManager::with_store(store, self.options),
        }
    }
}
