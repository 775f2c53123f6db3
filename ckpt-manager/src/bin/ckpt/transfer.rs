//! `ckpt cp`, `ckpt export`, `ckpt import`: steps and items into and out of a root.

use super::*;
use crate::show::human_bytes;

/// `ckpt cp`: copies with [`ckpt_manager::copy`]. The whole job is counted first (steps, files,
/// bytes); on a terminal one progress bar over it (bytes, rate, time left), otherwise a line per
/// step and a progress line at most every `progress_every` seconds (0: after every file); a
/// summary line at the end (`--json`: the summary as JSON, nothing else).
pub(crate) fn cp(
    args: &RootArgs,
    dst: &str,
    step: Option<&str>,
    progress_every: f64,
) -> Result<()> {
    use ckpt_manager::copy::{copy_root, copy_step, CopyEvent, CopySpec};
    use std::io::IsTerminal;
    let step = step.map(parse_step).transpose()?;
    let src = ckpt_manager::storage::open(&args.root)?;
    if src.stat("")?.is_none() && src.list_dir("")?.is_empty() {
        return Err(Error::not_found("no such checkpoint root").with_path(src.location("")));
    }
    let dst_store = ckpt_manager::storage::open(dst)?;
    let format = CheckpointManagerOptions {
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    }
    .name_format()?;
    let mut spec = CopySpec::new(src, dst_store);
    spec.format = format;
    let bar = (std::io::stdout().is_terminal() && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    if !progress_every.is_finite() || progress_every < 0.0 {
        return Err(Error::invalid_argument(format!(
            "--progress-every {progress_every}: must be a number of seconds, 0 or more"
        )));
    }
    let quiet = args.json;
    let mut lines = ProgressLines::new(progress_every);
    let mut on_event = |e: &CopyEvent| match (e, &bar) {
        (CopyEvent::Planned { bytes, .. }, Some(b)) => {
            b.set_length(*bytes);
            b.reset_eta();
        }
        (CopyEvent::StepStarted { step, .. }, Some(b)) => b.set_message(format!("step {step}")),
        (CopyEvent::FileCopied { bytes, .. }, Some(b)) => b.inc(*bytes),
        (CopyEvent::StepCommitted { step }, Some(b)) => b.println(format!("copied step {step}")),
        (CopyEvent::StepSkipped { step }, Some(b)) => b.println(format!(
            "skipped step {step}: already committed at the destination"
        )),
        (CopyEvent::RootMetadataCopied, Some(b)) => b.println("copied the root metadata"),
        (_, None) if quiet => {}
        (
            CopyEvent::Planned {
                steps,
                files,
                bytes,
            },
            None,
        ) => {
            lines.total = *bytes;
            out!(
                "copying {steps} step(s): {files} files, {} ({bytes} bytes)",
                human_bytes(*bytes)
            )
        }
        (CopyEvent::StepStarted { step, files, bytes }, None) => {
            out!("copying step {step}: {files} files, {bytes} bytes")
        }
        (CopyEvent::FileCopied { step, bytes, .. }, None) => {
            if let Some(line) = lines.copied(*step, *bytes) {
                out!("{line}")
            }
        }
        (CopyEvent::StepCommitted { step }, None) => out!("copied step {step}"),
        (CopyEvent::StepSkipped { step }, None) => {
            out!("skipped step {step}: already committed at the destination")
        }
        (CopyEvent::RootMetadataCopied, None) => out!("copied the root metadata"),
        (_, _) => {}
    };
    let result = match step {
        Some(s) => copy_step(&spec, s, &mut on_event),
        None => copy_root(&spec, &mut on_event),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = result?;
    if step.is_none() && summary.copied.is_empty() && summary.skipped.is_empty() {
        // Nothing was found to copy: say why when it looks like a mistake (steps named in
        // another format, or SRC a step directory) instead of succeeding with 0 steps.
        if let Some(why) = crate::why_no_steps(spec.src.as_ref(), args, "cp")? {
            return Err(Error::invalid_argument(format!(
                "no committed steps to copy in {}: {why}",
                args.root
            )));
        }
    }
    if args.json {
        let out = json!({
            "src": spec.src.location(""),
            "dst": spec.dst.location(""),
            "copied": summary.copied,
            "skipped": summary.skipped,
            "bytes": summary.bytes,
            "root_metadata_copied": summary.root_metadata_copied,
        });
        out!("{}", serde_json::to_string_pretty(&out).map_err(json_err)?);
    } else {
        out!(
            "{} step(s) copied ({} bytes), {} skipped, to {}",
            summary.copied.len(),
            summary.bytes,
            summary.skipped.len(),
            spec.dst.location("")
        );
    }
    Ok(())
}

/// Progress lines of a copy off a terminal: bytes done of the whole job, the rate since the
/// start and the time left at that rate, at most one line every `every` seconds.
struct ProgressLines {
    every: f64,
    total: u64,
    done: u64,
    started: std::time::Instant,
    last: Option<std::time::Instant>,
}

impl ProgressLines {
    fn new(every: f64) -> Self {
        ProgressLines {
            every,
            total: 0,
            done: 0,
            started: std::time::Instant::now(),
            last: None,
        }
    }

    /// Counts a file of `bytes` copied in `step`; the line to print, if one is due.
    fn copied(&mut self, step: Step, bytes: u64) -> Option<String> {
        self.done += bytes;
        let now = std::time::Instant::now();
        let since = self.last.unwrap_or(self.started);
        if now.duration_since(since).as_secs_f64() < self.every {
            return None;
        }
        self.last = Some(now);
        let secs = now.duration_since(self.started).as_secs_f64();
        let rate = if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        };
        let pct = if self.total > 0 {
            100.0 * self.done as f64 / self.total as f64
        } else {
            100.0
        };
        let left = if rate > 0.0 {
            format!(
                "{:.0} s left",
                self.total.saturating_sub(self.done) as f64 / rate
            )
        } else {
            "time left unknown".to_string()
        };
        Some(format!(
            "  step {step}: {} of {} ({pct:.0}%), {}/s, {left}",
            human_bytes(self.done),
            human_bytes(self.total),
            human_bytes(rate as u64)
        ))
    }
}

/// A byte progress bar on a terminal (none when stdout is not one, or with --json).
pub(crate) fn byte_bar(args: &RootArgs) -> Option<indicatif::ProgressBar> {
    (std::io::stdout().is_terminal() && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:<12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    })
}

pub(crate) fn export(
    args: &RootArgs,
    step: &str,
    out: &std::path::Path,
    item: Option<&str>,
    force: bool,
) -> Result<()> {
    let step = parse_step(step)?;
    // Never replace a file the user did not say may go (it is written whole, then renamed
    // over OUT).
    if out.is_dir() {
        return Err(Error::invalid_argument(format!(
            "{} is a directory: name the safetensors file to write, e.g. {}",
            out.display(),
            out.join(format!("step_{step}.safetensors")).display()
        ))
        .with_path(out.display().to_string()));
    }
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(Error::new(
            ErrorKind::AlreadyExists,
            format!(
                "{} exists; pass --force to replace it, or choose another file",
                out.display()
            ),
        )
        .with_path(out.display().to_string()));
    }
    let mngr = open(args)?;
    let bar = byte_bar(args);
    if let Some(b) = &bar {
        b.set_message("exporting");
    }
    let (name, n) =
        ckpt_manager::export::export_safetensors(&mngr, step, item, out, &mut |done, total| {
            if let Some(b) = &bar {
                b.set_length(total);
                b.set_position(done);
            }
        })?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if args.json {
        out!(
            "{}",
            json!({"step": step, "item": name, "arrays": n, "out": out.display().to_string()})
        );
    } else {
        out!(
            "exported {n} arrays of item {name:?} of step {step} to {}",
            out.display()
        );
    }
    Ok(())
}

pub(crate) fn import(
    input: &std::path::Path,
    args: &RootArgs,
    step: &str,
    item: &str,
    format: &str,
) -> Result<()> {
    let step = parse_step(step)?;
    let format = match format {
        "ckpt" => ckpt_manager::export::ImportFormat::Ckpt,
        _ => ckpt_manager::export::ImportFormat::Orbax,
    };
    let store = ckpt_manager::storage::open(&args.root)?;
    let options = CheckpointManagerOptions {
        step_prefix: args.step_prefix.clone(),
        step_format_fixed_length: args.step_format_fixed_length,
        ..Default::default()
    };
    let mut mngr = CheckpointManager::builder_with_store(store)
        .options(options)
        .build()?;
    let spinner = (std::io::stdout().is_terminal() && !args.json).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("importing {} as step {step}", input.display()));
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let n = ckpt_manager::export::import_safetensors(&mut mngr, input, step, item, format)?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    mngr.close()?;
    if args.json {
        out!("{}", json!({"step": step, "item": item, "arrays": n}));
    } else {
        out!(
            "imported {n} arrays from {} as item {item:?} of step {step}",
            input.display()
        );
    }
    Ok(())
}
