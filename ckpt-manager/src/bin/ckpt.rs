//! `ckpt`: inspect checkpoint roots written by ckpt or by Orbax.
//!
//! ```text
//! ckpt ls ROOT [--json]            the committed steps: commit time, items, metrics; latest marked
//! ckpt show ROOT STEP [--json]     one step's metadata and items (JSON items with their value)
//! ```
//! Both open the root read-only and change nothing in it. Errors print one line and exit 1.

use ckpt_manager::core::{ErrorKind, Step};
use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Error, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ckpt",
    version,
    about = "Inspect Orbax-compatible checkpoint roots"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the committed steps of a root.
    Ls {
        #[command(flatten)]
        root: RootArgs,
    },
    /// Show one step: its metadata, metrics and items.
    Show {
        #[command(flatten)]
        root: RootArgs,
        /// The step to show.
        #[arg(allow_hyphen_values = true)]
        step: String,
    },
}

#[derive(Args)]
struct RootArgs {
    /// The checkpoint root: a local path, file:///… or memory://.
    root: String,
    /// Step directories are named <PREFIX>_<step>.
    #[arg(long)]
    step_prefix: Option<String>,
    /// Step numbers in directory names are zero-padded to this many digits.
    #[arg(long)]
    step_format_fixed_length: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls { root } => ls(&root),
        Command::Show { root, step } => show(&root, &step),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ckpt: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn open(args: &RootArgs) -> Result<CheckpointManager> {
    let store = ckpt_manager::storage::open(&args.root)?;
    match store.stat("")? {
        Some(_) => {}
        None if !store.list_dir("")?.is_empty() => {}
        None => {
            return Err(Error::not_found("no such checkpoint root").with_path(store.location("")))
        }
    }
    let options = CheckpointManagerOptions {
        read_only: true,
        create: false,
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    };
    CheckpointManager::builder_with_store(store)
        .options(options)
        .build()
}

fn ls(args: &RootArgs) -> Result<()> {
    let mngr = open(args)?;
    let latest = mngr.latest_step();
    let mut steps = Vec::new();
    for c in mngr.checkpoints() {
        let items: Vec<String> = mngr.item_handlers(c.step)?.into_keys().collect();
        steps.push(json!({
            "step": c.step,
            "name": mngr.step_dir_name(c.step),
            "commit_time": c.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "items": items,
            "metrics": c.metrics.clone().map(Value::Object).unwrap_or(Value::Null),
        }));
    }
    if args.json {
        let out = json!({"root": mngr.directory(), "steps": steps, "latest_step": latest});
        println!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<27} {:<30} METRICS",
        "STEP", "COMMIT TIME (UTC)", "ITEMS"
    );
    for s in &steps {
        let step = s["step"].as_u64().unwrap_or_default();
        let mark = if Some(step) == latest {
            format!("{step} (latest)")
        } else {
            step.to_string()
        };
        let items = s["items"].as_array().map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        });
        let metrics = match &s["metrics"] {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
            _ => "-".to_string(),
        };
        println!(
            "{:<14} {:<27} {:<30} {}",
            mark,
            s["commit_time"].as_str().unwrap_or("-"),
            items.unwrap_or_default(),
            metrics
        );
    }
    if steps.is_empty() {
        println!("(no committed steps in {})", mngr.directory());
    }
    Ok(())
}

fn show(args: &RootArgs, step: &str) -> Result<()> {
    let step: Step = step.parse().map_err(|_| {
        Error::invalid_argument(format!("step must be a non-negative integer, got {step:?}"))
    })?;
    let mngr = open(args)?;
    let meta = mngr.step_metadata(step)?;
    let metrics = mngr.metrics(step)?;
    let handlers = mngr.item_handlers(step)?;
    let mut names: Vec<String> = mngr.item_metadata(step)?.into_keys().collect();
    for n in handlers.keys() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.sort();
    let mut items = serde_json::Map::new();
    for name in &names {
        let handler = handlers.get(name).cloned();
        let is_json = handler.as_deref() == Some(ckpt_manager::handlers::ORBAX_JSON_HANDLER);
        let value = if is_json {
            match mngr.restore_items(Some(step), &[name.as_str()]) {
                Ok(r) => r.json_value(name)?.clone(),
                Err(e) if e.kind() == ErrorKind::NotFound => Value::Null,
                Err(e) => return Err(e),
            }
        } else {
            Value::Null
        };
        items.insert(name.clone(), json!({"handler": handler, "value": value}));
    }
    let out = json!({
        "step": step,
        "metadata": meta.to_value(),
        "metrics": metrics.map(Value::Object).unwrap_or(Value::Null),
        "items": items,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
        return Ok(());
    }
    println!("step {step} ({})", mngr.step_dir_name(step));
    let ts = |v: Option<i64>| {
        v.map(|n| {
            chrono::DateTime::from_timestamp_nanos(n)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        })
        .unwrap_or_else(|| "-".into())
    };
    println!("  init time:   {}", ts(meta.init_timestamp_nsecs));
    println!("  commit time: {}", ts(meta.commit_timestamp_nsecs));
    println!(
        "  custom metadata: {}",
        Value::Object(meta.custom_metadata.clone())
    );
    println!("  metrics: {}", out["metrics"]);
    println!("  items:");
    for (name, item) in &items {
        println!(
            "    {name}: {}",
            item["handler"].as_str().unwrap_or("(no handler recorded)")
        );
        if !item["value"].is_null() {
            println!("      value: {}", item["value"]);
        }
    }
    Ok(())
}

fn json_err(e: serde_json::Error) -> Error {
    Error::invalid_argument("cannot print JSON").with_source(e)
}
