//! `ckpt cp`, `ckpt export`, `ckpt import`: steps and items into and out of a root.

use super::*;

/// `ckpt cp`: copies with [`ckpt_manager::copy`]; a progress bar (bytes) on a terminal, one line
/// per step otherwise; a summary line at the end (`--json`: the summary as JSON).
pub(crate) fn cp(args: &RootArgs, dst: &str, step: Option<&str>) -> Result<()> {
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
    let quiet = args.json;
    let mut on_event = |e: &CopyEvent| match (e, &bar) {
        (CopyEvent::StepStarted { step, bytes, .. }, Some(b)) => {
            b.set_length(b.length().unwrap_or(0) + bytes);
            b.set_message(format!("step {step}"));
        }
        (CopyEvent::FileCopied { bytes, .. }, Some(b)) => b.inc(*bytes),
        (CopyEvent::StepCommitted { step }, Some(b)) => b.println(format!("copied step {step}")),
        (CopyEvent::StepSkipped { step }, Some(b)) => b.println(format!(
            "skipped step {step}: already committed at the destination"
        )),
        (CopyEvent::RootMetadataCopied, Some(b)) => b.println("copied the root metadata"),
        (_, None) if quiet => {}
        (CopyEvent::StepStarted { step, files, bytes }, None) => {
            out!("copying step {step}: {files} files, {bytes} bytes")
        }
        (CopyEvent::StepCommitted { step }, None) => out!("copied step {step}"),
        (CopyEvent::StepSkipped { step }, None) => {
            out!("skipped step {step}: already committed at the destination")
        }
        (CopyEvent::RootMetadataCopied, None) => out!("copied the root metadata"),
        (CopyEvent::FileCopied { .. }, None) => {}
    };
    let result = match step {
        Some(s) => copy_step(&spec, s, &mut on_event),
        None => copy_root(&spec, &mut on_event),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let summary = result?;
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
) -> Result<()> {
    let step = parse_step(step)?;
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
