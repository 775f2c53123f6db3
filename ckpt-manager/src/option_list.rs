//! The manager's options, listed once.
//!
//! [`manager_options!`] holds every option of [`crate::CheckpointManagerOptions`]: its doc, type,
//! default and builder setter, and for the options that are data, their serde form in a
//! [`crate::ManagerConfig`] file. It hands that list to a consumer macro, so the struct, its
//! `Default`, the builder's setters (`options.rs`) and the config file's fields and copies
//! (`config.rs`) all come from here; adding an option is one entry.
//!
//! Each entry of `data` is `DOC name: Type = default, "serde with-module", set(arg: ArgType) =>
//! value;` (the setter is optional). `code` entries (closures, trait objects, handlers) have no
//! serde form and are not part of a config. The two policies are data but typed differently in a
//! config (`Box<dyn …>` through typetag), so `config.rs` copies those two itself.

/// Calls `$consumer! { data { … } code { … } }` with the option list (see the module docs).
macro_rules! manager_options {
    ($consumer:ident) => {
        $consumer! {
            data {
                /// Save when `step % save_interval_steps == 0` (steps; default 1, every step).
                /// The default save decision also saves the first step of a root that has no
                /// checkpoint yet, whatever its number (Orbax's `InitialSavePolicy`), and the
                /// step at which a preemption is signalled. `None` turns the interval off. `Some(0)` is rejected when the manager is built
                /// unless `read_only` (deviation D4). Ignored when `save_decision_policy` is set.
                /// In a config: a number, or `false` (JSON also `null`) for off.
                save_interval_steps: Option<u64> = Some(1), "form::number_or_off",
                    set(steps: u64) => Some(steps);
                /// Also save at these steps. Ignored when `save_decision_policy` is set.
                save_on_steps: Vec<u64> = Vec::new(), "form::plain",
                    set(steps: impl IntoIterator<Item = u64>) => steps.into_iter().collect();
                /// Keep at most this many checkpoints (the newest, or the best by `best_metric`).
                /// `None` keeps all; `0` deletes every checkpoint nothing else keeps, including
                /// the one just saved (as Orbax; opening a writer with it logs a warning).
                max_to_keep: Option<u64> = None, "form::plain", set(n: u64) => Some(n);
                /// Also keep every step that is a multiple of this (steps). `Some(0)` is rejected
                /// (D4).
                keep_period: Option<u64> = None, "form::plain", set(steps: u64) => Some(steps);
                /// Also keep one checkpoint per this many seconds (anchored at the oldest kept).
                keep_time_interval_secs: Option<u64> = None, "form::plain",
                    set(secs: u64) => Some(secs);
                /// Rank checkpoints by this metric key (Orbax `best_fn = lambda m: m[key]`):
                /// retention keeps the best `max_to_keep` and
                /// [`crate::CheckpointManager::best_step`] returns the best. A save whose metrics
                /// lack the key is refused before anything is written (deviation D5). The
                /// builder sets it with its mode: `best_metric(key, mode)`.
                best_metric: Option<String> = None, "form::plain";
                /// Whether lower (`Min`) or higher (`Max`, Orbax's default) values of
                /// `best_metric` are better. In a config: `"min"` or `"max"`.
                best_mode: ckpt_policy::BestMode = ckpt_policy::BestMode::Max, "form::plain",
                    set(mode: ckpt_policy::BestMode) => mode;
                /// With `best_metric`: keep checkpoints that have no metrics (default true).
                keep_checkpoints_without_metrics: bool = true, "form::plain",
                    set(keep: bool) => keep;
                /// Accept a preservation policy (or `best_metric`) that ranks by a metric no step
                /// has (default false). Without it, a misspelt metric (`val_los`) is an
                /// `InvalidConfig` error naming the metric and the metrics that exist — when the
                /// manager is opened on a root whose steps have metrics, at a `save` whose step
                /// and committed steps all lack it (before anything is written), and in
                /// [`crate::CheckpointManager::apply_preservation`] — instead of ranking every
                /// step as having no value and deleting the best ones
                /// ([`ckpt_policy::check_metrics_exist`]). ckpt's own (Orbax raises `KeyError` at
                /// a save whose metrics lack the key, and nothing for a `BestN` policy).
                allow_missing_best_metric: bool = false, "form::plain",
                    set(allow: bool) => allow;
                /// Step directories are named `<step_prefix>_<step>` (prefix matched literally,
                /// deviation D7).
                step_prefix: Option<String> = None, "form::plain",
                    set(prefix: impl Into<String>) => Some(prefix.into());
                /// Zero-pad the step in directory names to this many digits.
                step_format_fixed_length: Option<usize> = None, "form::plain",
                    set(digits: usize) => Some(digits);
                /// Create the root when opening it (default true; never when `read_only`).
                create: bool = true, "form::plain", set(create: bool) => create;
                /// Never write: `should_save` is false, a non-forced `save` returns `false`, a
                /// forced `save` and `delete` are `ReadOnly` errors (deviation D3). Disables the
                /// retention options, as Orbax.
                read_only: bool = false, "form::plain", set(read_only: bool) => read_only;
                /// On open, remove tmp directories left by saves that died (default false).
                cleanup_tmp_directories: bool = false, "form::plain",
                    set(cleanup: bool) => cleanup;
                /// Move deleted steps into `<root>/<todelete_subdir>/` instead of removing them.
                todelete_subdir: Option<String> = None, "form::plain",
                    set(subdir: impl Into<String>) => Some(subdir.into());
                /// Write `root_metadata` once, when the root has none yet (default true).
                save_root_metadata: bool = true, "form::plain", set(save: bool) => save;
                /// The root metadata's `custom_metadata` (Orbax's `metadata=` constructor
                /// argument; a JSON object / TOML table). Written once and never overwritten.
                root_metadata: Option<ckpt_core::Metrics> = None, "form::plain",
                    set(custom: ckpt_core::Metrics) => Some(custom);
                /// Never write a step's metrics file (they still count in memory until a reopen).
                prevent_write_metrics: bool = false, "form::plain", set(prevent: bool) => prevent;
                /// How steps are committed: atomic rename of a tmp directory, or a commit file
                /// written last (Orbax `AtomicityOptions.mode`; `Auto` picks by the store's
                /// capabilities). In a config: `"auto"`, `"atomic_rename"` or `"commit_file"`.
                atomicity: ckpt_storage::AtomicityMode = ckpt_storage::AtomicityMode::Auto,
                    "form::atomicity", set(mode: ckpt_storage::AtomicityMode) => mode;
                /// On open, list steps without reading their metadata or metrics (times are
                /// unknown and metrics absent until `reload`).
                lightweight_initialize: bool = false, "form::plain", set(light: bool) => light;
                /// Write, commit and apply retention in the background (default true, as Orbax):
                /// `save` returns once the items no longer need the caller's memory (moved in;
                /// or, when borrowed, copied into the staging pool — see
                /// `async_staging_max_bytes`), at most one save is in flight, and a background
                /// failure is reported once by the next `save`, `wait_until_finished` or `close`
                /// (spec §5.8–§5.9).
                enable_async_checkpointing: bool = true, "form::plain", set(enable: bool) => enable;
                /// The staging pool of async saves (bytes; default `u64::MAX`, no cap): an async
                /// `save` copies borrowed tensors and bytes items (`Composite::tensors`,
                /// `Composite::bytes`) into buffers it keeps and reuses from one save to the next
                /// (faulted in once, when first allocated), returns, and the background thread
                /// writes them (with fsync) or uploads them, commits, and gives the buffers back.
                /// `save` then blocks for one copy into memory already there and makes no storage
                /// call per item. At most one save is in flight, so the pool holds about one
                /// save's borrowed payload between saves (a reused buffer may be up to a quarter
                /// larger than its array); buffers a save does not need are freed when it stages,
                /// and [`crate::CheckpointManager::release_staging_memory`], `close` and dropping
                /// the manager free the rest. A number caps the pool: items beyond it, in name
                /// order, and every borrowed item when off (`None`; in a config `false`) are
                /// handled as without a pool: written into the step's tmp directory before `save`
                /// returns on a local store (without fsync; the background thread syncs them) and
                /// copied into fresh memory on an object store. Borrowed pytrees and custom items
                /// are never staged. ckpt's own (Orbax has no such option; PyTorch DCP's async
                /// save stages into reused pinned memory in the same way).
                async_staging_max_bytes: Option<u64> = Some(u64::MAX), "form::number_or_off",
                    set(bytes: Option<u64>) => bytes;
                /// How long (seconds) waiting for a background save may take before it is
                /// abandoned with a `Timeout` error naming its phase (Orbax
                /// `AsyncOptions.timeout_secs`, default 1200).
                async_timeout_secs: u64 = 1200, "form::plain", set(secs: u64) => secs;
                /// Delete steps on a background deleter thread (Orbax `enable_background_delete`,
                /// default false): retention and `delete` drop the step from the listing at once
                /// and its directory goes later; `close` waits for the queue and reports the
                /// first deletion error.
                enable_background_delete: bool = false, "form::plain", set(enable: bool) => enable;
                /// Verify, on restore, every file recorded in the step's checksum manifest
                /// (`_CKPT_CHECKSUMS`: size and CRC32C of each file a handler wrote) before a
                /// handler sees it (default true). A flipped bit or a truncated file is then a
                /// `Corrupt` error naming the file. ckpt's own addition: Orbax has no checksums
                /// (and ignores the file).
                verify_checksums: bool = true, "form::plain", set(verify: bool) => verify;
                /// The writer lease of a root on a store without a lock of its own (object
                /// stores, memory): its time to live in seconds (default 30), i.e. how long a
                /// writer that died without releasing it keeps the next writer out (`Locked`,
                /// naming the holder and the expiry). Renewed every third of it while the manager
                /// lives ([`ckpt_storage::WriterLease`]). `None` (in a config `false`) turns the
                /// guard off: nothing then keeps a second writer out, each step is still claimed
                /// by the writer that writes it (so two writers of one step never mix or delete
                /// each other's files), and `cleanup_tmp_directories` is refused (it could remove
                /// a live writer's step). Local roots always take their file lock. ckpt's own;
                /// Orbax has no guard.
                writer_lease_ttl_secs: Option<u64> = Some(ckpt_storage::DEFAULT_LEASE_TTL_SECS),
                    "form::number_or_off", set(secs: Option<u64>) => secs;
                /// How long (seconds) opening a writer waits, polling every second, while another
                /// writer holds the root (its local lock, or its writer lease until it is released
                /// or expires) before giving up with `Locked` (default 0: at once). A job
                /// restarted right after its previous run was killed on an object store waits out
                /// that run's lease this way. ckpt's own.
                wait_for_writer_secs: u64 = 0, "form::plain", set(secs: u64) => secs;
                /// On a local root opened by URI or path ([`crate::CheckpointManager::open`],
                /// `builder(root)`): write every durable file of at least this many bytes with
                /// `O_DIRECT`, bypassing the page cache
                /// ([`ckpt_storage::LocalStore::with_direct_io`]; default `None`, in a config
                /// `false`: off). About halves a large save where fresh page-cache pages are
                /// expensive (VMs that hand freed memory back to their host); the step is then not
                /// in the page cache. Ignored for other stores and for `builder_with_store`
                /// (configure the store itself). ckpt's own (issue 14).
                direct_io_min_bytes: Option<u64> = None, "form::number_or_off",
                    set(bytes: u64) => Some(bytes);
                /// On a local root opened by URI or path ([`crate::CheckpointManager::open`],
                /// `builder(root)`): write every durable file of at least this many bytes with
                /// write-behind, its writeback started piece by piece as it is written and its
                /// pages dropped from the page cache once on the device
                /// ([`ckpt_storage::LocalStore::with_write_behind`]; default 8 MiB, `None` or in
                /// a config `false`: plain buffered writes that stay in the page cache). A
                /// 1 GiB save here: 0.5–0.9 s against 0.8–3.8 s plain; the step is then not in
                /// the page cache. Ignored for other stores, for files written with
                /// `direct_io_min_bytes`, and for `builder_with_store` (configure the store
                /// itself). ckpt's own (issue 14).
                write_behind_min_bytes: Option<u64> = Some(ckpt_storage::WRITE_BEHIND_MIN_BYTES),
                    "form::number_or_off", set(bytes: Option<u64>) => bytes;
                /// With a [`coordinator`](crate::CheckpointManagerOptions::coordinator): how long
                /// (seconds) each process waits at one phase of a multi-process operation
                /// (opening, the save decision, each phase of a save, a delete) for the others
                /// before giving up with `Timeout` naming the phase and the missing processes
                /// (default 300, Orbax's default barrier timeout, spec §5.1). A process known to
                /// be gone (its etcd lease ended) fails the wait sooner, with `Coordination`
                /// naming it. A coordination service that stops answering (etcd stopped) is
                /// tried again for this long, then `Timeout` naming the phase and the step.
                coordination_timeout_secs: u64 = 300, "form::plain", set(secs: u64) => secs;
                /// With a [`coordinator`](crate::CheckpointManagerOptions::coordinator): restores
                /// read the store on the primary only, and every other process gets the same
                /// bytes (or the same error) through the coordinator (default false: each
                /// process reads on its own). As Orbax's `single_host_load_and_broadcast`
                /// (spec §5.1), for every restore; a restore then is a collective call: every
                /// process restores the same steps and items in the same order. Meant for small
                /// items (the bytes pass through the coordination service, 512 KiB a value, and
                /// stay there until the job's next run); read large sharded arrays per process
                /// with `restore_array_slice` instead (`restore_tensors_mapped` is refused:
                /// a mapping cannot be broadcast). Deviation: Orbax broadcasts through JAX
                /// (`multihost.broadcast_one_to_all`) and only for PyTree restores.
                single_host_load_and_broadcast: bool = false, "form::plain",
                    set(on: bool) => on;
            }
            code {
                /// A custom name format; overrides `step_prefix` and `step_format_fixed_length`.
                step_name_format: Option<std::sync::Arc<dyn ckpt_core::NameFormat>> = None,
                    set(format: std::sync::Arc<dyn ckpt_core::NameFormat>) => Some(format);
                /// Replaces the save decision built from `save_interval_steps` and
                /// `save_on_steps`. In a config: its typetag form, e.g.
                /// `{"type": "FixedIntervalPolicy", "interval": 1000}`.
                save_decision_policy: Option<std::sync::Arc<dyn ckpt_policy::SaveDecisionPolicy>> = None,
                    set(policy: std::sync::Arc<dyn ckpt_policy::SaveDecisionPolicy>) => Some(policy);
                /// Replaces the preservation built from `max_to_keep`, `keep_period`,
                /// `keep_time_interval_secs` and `best_metric`; exclusive with those
                /// (InvalidConfig). In a config: its typetag form, e.g.
                /// `{"type": "AnyPreservationPolicy", "policies": [{"type": "LatestN", "n": 3}]}`.
                preservation_policy: Option<std::sync::Arc<dyn ckpt_policy::PreservationPolicy>> = None,
                    set(policy: std::sync::Arc<dyn ckpt_policy::PreservationPolicy>) => Some(policy);
                /// How storage operations that fail with a temporary error (an object store's
                /// 500, 503 or `SlowDown`) are retried: the manager puts a
                /// [`ckpt_storage::RetryStore`] of this policy over any store that is not local
                /// (default [`ckpt_storage::RetryPolicy::default`]: 10 attempts, exponential
                /// backoff with full jitter from 100 ms up to 5 s, 60 s at most); `None`: no
                /// retries. Local file systems report no temporary errors. ckpt's own.
                retry: Option<ckpt_storage::RetryPolicy> = Some(ckpt_storage::RetryPolicy::default()),
                    set(policy: Option<ckpt_storage::RetryPolicy>) => policy;
                /// The clock for save times and time-based policies.
                clock: std::sync::Arc<dyn ckpt_core::Clock> = std::sync::Arc::new(ckpt_core::SystemClock),
                    set(clock: std::sync::Arc<dyn ckpt_core::Clock>) => clock;
                /// Where a preemption signal comes from (none by default): when it reports one,
                /// the default save decision saves the current step
                /// (`PreemptionCheckpointingPolicy`).
                preemption: Option<std::sync::Arc<dyn $crate::PreemptionSource>> = None,
                    set(source: std::sync::Arc<dyn $crate::PreemptionSource>) => Some(source);
                /// Who hears how far a save or restore has got (none by default):
                /// [`crate::Progress`] reports with bytes and items done and, when known, the
                /// totals, on the thread doing the work. The builder also takes a closure:
                /// `on_progress(|p| …)`. ckpt's own (issue 16).
                progress: Option<std::sync::Arc<dyn $crate::ProgressObserver>> = None,
                    set(observer: std::sync::Arc<dyn $crate::ProgressObserver>) => Some(observer);
                /// Handlers for named items, overriding the default handler chosen from the
                /// item's kind and, on restore, the handler named in the step metadata. The
                /// builder adds one at a time: `handler(item, handler)`.
                handlers: Vec<(String, std::sync::Arc<dyn ckpt_handlers::CheckpointHandler>)> = Vec::new();
                /// The processes of a multi-process job (issue 15; none by default: this process
                /// is the whole job). Every participating process opens a manager of the same
                /// root with the same options and its own coordinator, and calls the same
                /// methods in the same order, each `save` with its own part of the step's items
                /// (see [`crate::CheckpointManager`], "Multi-process jobs"). As Orbax, where
                /// every JAX process calls the manager (spec §5.11); deviations: saves run
                /// synchronously, and the processes meet through this trait instead of JAX's
                /// coordination service.
                coordinator: Option<std::sync::Arc<dyn $crate::coordination::Coordinator>> = None,
                    set(coordinator: std::sync::Arc<dyn $crate::coordination::Coordinator>) => Some(coordinator);
                /// With a `coordinator`: which process is the primary (default 0), which take
                /// part (default all; must be the coordinator's participants), and the prefix of
                /// the manager's coordination names (default `ckpt`), as Orbax
                /// `MultiprocessingOptions` (spec §5.1). Deviation: `primary_host = None` (every
                /// process a primary) does not exist: one primary commits.
                multiprocessing_options: $crate::coordination::MultiprocessingOptions =
                    $crate::coordination::MultiprocessingOptions::default(),
                    set(options: $crate::coordination::MultiprocessingOptions) => options;
            }
        }
    };
}

pub(crate) use manager_options;
