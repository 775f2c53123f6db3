//! The figures of a bench run: one [`Row`] per measured figure (its samples, median, baseline,
//! ratio and target), printed as a table and written as JSON.

use serde_json::{json, Value};
use std::fmt::Write as _;

/// How a row's ratio to its baseline is computed and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatioKind {
    /// `baseline time / time`: the speed relative to the baseline (higher is better; 0.9 means
    /// 90 % of the baseline's throughput).
    Speed,
    /// `time / baseline time` (lower is better; 1.2 means 20 % slower than the baseline).
    Time,
    /// `bytes / baseline bytes` (lower is better).
    Bytes,
}

impl RatioKind {
    fn name(self) -> &'static str {
        match self {
            RatioKind::Speed => "speed",
            RatioKind::Time => "time",
            RatioKind::Bytes => "bytes",
        }
    }
}

/// A target on a ratio: `ratio >= value` ([`Cmp::Ge`]) or `ratio <= value` ([`Cmp::Le`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cmp {
    /// At least.
    Ge,
    /// At most.
    Le,
}

/// What a row measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Seconds (samples are wall-clock durations).
    Seconds,
    /// Bytes (samples are memory sizes).
    Bytes,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    /// The section, e.g. `fs, 256 MiB, 1 array`.
    pub section: String,
    /// Stable identifier for the JSON, e.g. `fs/256MiB/one/ckpt_sync_save`.
    pub key: String,
    /// What was measured, e.g. `ckpt sync save`.
    pub name: String,
    /// Unit of the samples.
    pub unit: Unit,
    /// Every repetition's value (seconds or bytes).
    pub samples: Vec<f64>,
    /// Bytes moved per repetition, for a throughput column (MiB/s); `None` when meaningless.
    pub bytes: Option<u64>,
    /// The baseline's name (e.g. `raw write+fsync`, `target 50 ms`), its median and the ratio.
    pub baseline: Option<(String, f64, RatioKind, f64)>,
    /// The target on the ratio, and whether it is met.
    pub target: Option<(Cmp, f64, bool)>,
    /// A short note printed after the row (why a figure is missing, what it includes).
    pub note: Option<String>,
}

impl Row {
    /// The median of the samples (the mean of the two middle ones for an even count); NaN when
    /// there are none.
    pub fn median(&self) -> f64 {
        median(&self.samples)
    }
}

/// The median of `v` (NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// All the rows of a run, plus notes about the environment.
#[derive(Debug, Default)]
pub struct Report {
    /// The figures, in the order measured.
    pub rows: Vec<Row>,
    /// Facts about the run (cores, disk, whether the page cache could be dropped, ...).
    pub notes: Vec<String>,
}

impl Report {
    /// Adds a row of durations (seconds); returns its index.
    pub fn time(
        &mut self,
        section: &str,
        key: &str,
        name: &str,
        samples: Vec<f64>,
        bytes: Option<u64>,
    ) -> usize {
        self.push(section, key, name, Unit::Seconds, samples, bytes)
    }

    /// Adds a row of memory sizes (bytes); returns its index.
    pub fn bytes(&mut self, section: &str, key: &str, name: &str, samples: Vec<f64>) -> usize {
        self.push(section, key, name, Unit::Bytes, samples, None)
    }

    fn push(
        &mut self,
        section: &str,
        key: &str,
        name: &str,
        unit: Unit,
        samples: Vec<f64>,
        bytes: Option<u64>,
    ) -> usize {
        self.rows.push(Row {
            section: section.to_string(),
            key: key.to_string(),
            name: name.to_string(),
            unit,
            samples,
            bytes,
            baseline: None,
            target: None,
            note: None,
        });
        self.rows.len() - 1
    }

    /// Sets row `row`'s baseline to row `base` (its name and median), with the ratio of `kind`
    /// and an optional target on that ratio.
    pub fn compare(
        &mut self,
        row: usize,
        base: usize,
        kind: RatioKind,
        target: Option<(Cmp, f64)>,
    ) {
        let (name, m) = (self.rows[base].name.clone(), self.rows[base].median());
        self.compare_to(row, &name, m, kind, target);
    }

    /// Sets row `row`'s baseline to a fixed value (`name` says what it is, e.g. `target 50 ms`).
    pub fn compare_to(
        &mut self,
        row: usize,
        name: &str,
        base_median: f64,
        kind: RatioKind,
        target: Option<(Cmp, f64)>,
    ) {
        let m = self.rows[row].median();
        let ratio = match kind {
            RatioKind::Speed => base_median / m,
            RatioKind::Time | RatioKind::Bytes => m / base_median,
        };
        let r = &mut self.rows[row];
        r.baseline = Some((name.to_string(), base_median, kind, ratio));
        r.target = target.map(|(cmp, v)| {
            let met = match cmp {
                Cmp::Ge => ratio >= v,
                Cmp::Le => ratio <= v,
            };
            (cmp, v, met)
        });
    }

    /// Attaches a note to row `row`.
    pub fn note(&mut self, row: usize, note: impl Into<String>) {
        self.rows[row].note = Some(note.into());
    }

    /// The table, one section after another.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut section = None;
        for r in &self.rows {
            if section != Some(&r.section) {
                let _ = writeln!(out, "\n## {}", r.section);
                let _ = writeln!(
                    out,
                    "{:<40} {:>10} {:>9}  {:<30} {:>8}  {:<12} met",
                    "figure", "median", "MiB/s", "baseline (median)", "ratio", "target"
                );
                section = Some(&r.section);
            }
            let m = r.median();
            let value = match r.unit {
                Unit::Seconds => fmt_secs(m),
                Unit::Bytes => fmt_bytes(m),
            };
            let rate = match (r.unit, r.bytes) {
                (Unit::Seconds, Some(b)) if m > 0.0 => format!("{:.0}", b as f64 / m / MIB),
                _ => String::new(),
            };
            let (base, ratio) = match &r.baseline {
                Some((name, bm, kind, ratio)) => {
                    let bv = match kind {
                        RatioKind::Bytes => fmt_bytes(*bm),
                        _ => fmt_secs(*bm),
                    };
                    (format!("{name} ({bv})"), format!("{ratio:.3}"))
                }
                None => (String::new(), String::new()),
            };
            let (target, met) = match (&r.target, &r.baseline) {
                (Some((cmp, v, met)), Some((_, _, kind, _))) => {
                    let c = match cmp {
                        Cmp::Ge => "≥",
                        Cmp::Le => "≤",
                    };
                    (
                        format!("{} {c} {v}", kind.name()),
                        if *met { "yes" } else { "NO" }.to_string(),
                    )
                }
                _ => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{:<40} {:>10} {:>9}  {:<30} {:>8}  {:<12} {}",
                r.name,
                value,
                rate,
                truncate(&base, 30),
                ratio,
                target,
                met
            );
            if let Some(n) = &r.note {
                let _ = writeln!(out, "    ({n})");
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nnotes:");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }

    /// The targets that were missed, as `section: figure (ratio vs target)` lines.
    pub fn missed(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| match (&r.target, &r.baseline) {
                (Some((cmp, v, false)), Some((name, _, kind, ratio))) => Some(format!(
                    "{}: {} = {ratio:.3} ({} vs {name}), target {} {v}",
                    r.section,
                    r.name,
                    kind.name(),
                    match cmp {
                        Cmp::Ge => "≥",
                        Cmp::Le => "≤",
                    }
                )),
                _ => None,
            })
            .collect()
    }

    /// Every figure as JSON: `{"notes": [...], "rows": [{"section", "key", "name", "unit",
    /// "samples", "median", "bytes", "mib_per_s", "baseline": {"name", "median", "kind",
    /// "ratio"}, "target": {"cmp", "value", "met"}, "note"}]}`; times in seconds, sizes in bytes.
    pub fn to_json(&self, meta: Value) -> Value {
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let m = r.median();
                json!({
                    "section": r.section,
                    "key": r.key,
                    "name": r.name,
                    "unit": match r.unit { Unit::Seconds => "s", Unit::Bytes => "bytes" },
                    "samples": r.samples,
                    "median": finite(m),
                    "bytes": r.bytes,
                    "mib_per_s": match (r.unit, r.bytes) {
                        (Unit::Seconds, Some(b)) if m > 0.0 => finite(b as f64 / m / MIB),
                        _ => Value::Null,
                    },
                    "baseline": r.baseline.as_ref().map(|(name, bm, kind, ratio)| json!({
                        "name": name, "median": finite(*bm), "kind": kind.name(), "ratio": finite(*ratio),
                    })),
                    "target": r.target.as_ref().map(|(cmp, v, met)| json!({
                        "cmp": match cmp { Cmp::Ge => ">=", Cmp::Le => "<=" }, "value": v, "met": met,
                    })),
                    "note": r.note,
                })
            })
            .collect();
        json!({ "meta": meta, "notes": self.notes, "rows": rows })
    }
}

/// Bytes per MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

fn finite(x: f64) -> Value {
    if x.is_finite() {
        json!(x)
    } else {
        Value::Null
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// A duration in seconds as `1.234 s`, `12.3 ms` or `45.6 µs`.
pub fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        "n/a".to_string()
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// A size in bytes as `12.3 MiB` (or `n/a`).
pub fn fmt_bytes(b: f64) -> String {
    if !b.is_finite() {
        "n/a".to_string()
    } else if b.abs() >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.0} KiB", b / 1024.0)
    }
}
