//! Samples and their summaries: median, p95, p99 (nearest rank), and the rows of the report.

use serde::Serialize;

/// Summary of one series of samples.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// `None` for no samples. Non-finite samples are dropped.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Some(Summary {
            n,
            median,
            p95: percentile(&s, 95.0),
            p99: percentile(&s, 99.0),
            min: s[0],
            max: s[n - 1],
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A goal a row is held to.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// moat's median / the baseline's median must be at most this.
    RatioAtMost { max: f64 },
    /// The row's own value (the `moat` median) must be at most this.
    ValueAtMost { max: f64 },
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::RatioAtMost { max } => format!("ratio <= {max}"),
            Target::ValueAtMost { max } => format!("<= {max}"),
        }
    }
}

/// One line of the report: moat against a baseline (runc, or the bare-namespaces floor).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    pub unit: String,
    pub moat: Option<Summary>,
    /// What moat is compared with: "runc", "bare namespaces", or "-" for none.
    pub baseline_name: String,
    pub baseline: Option<Summary>,
    /// moat median / baseline median.
    pub ratio: Option<f64>,
    pub target: Option<Target>,
    /// Whether the target is met (`None` when there is no target or no data).
    pub met: Option<bool>,
    /// Anything the reader needs to interpret the row.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

impl Row {
    pub fn new(name: &str, unit: &str, moat: &[f64], baseline_name: &str, baseline: &[f64]) -> Row {
        let moat = Summary::of(moat);
        let baseline = Summary::of(baseline);
        let ratio = match (moat, baseline) {
            (Some(m), Some(b)) if b.median > 0.0 => Some(m.median / b.median),
            _ => None,
        };
        Row {
            name: name.into(),
            unit: unit.into(),
            moat,
            baseline_name: baseline_name.into(),
            baseline,
            ratio,
            target: None,
            met: None,
            note: String::new(),
        }
    }

    pub fn target(mut self, target: Target) -> Row {
        self.target = Some(target);
        self.met = match target {
            Target::RatioAtMost { max } => self.ratio.map(|r| r <= max),
            Target::ValueAtMost { max } => self.moat.map(|m| m.median <= max),
        };
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// Formats a value for the table: 3 significant digits, never scientific.
pub fn fmt(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The report as a plain-text table.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "row", "unit", "moat med", "moat p95", "base", "base med", "base p95", "ratio", "target",
        "met",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    let opt = |s: Option<Summary>, f: fn(&Summary) -> f64| {
        s.map(|s| fmt(f(&s))).unwrap_or_else(|| "-".into())
    };
    for r in rows {
        lines.push(vec![
            r.name.clone(),
            r.unit.clone(),
            opt(r.moat, |s| s.median),
            opt(r.moat, |s| s.p95),
            r.baseline_name.clone(),
            opt(r.baseline, |s| s.median),
            opt(r.baseline, |s| s.p95),
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()),
            r.target.map(|t| t.describe()).unwrap_or_else(|| "-".into()),
            match r.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 0 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if n == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1)));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles_by_nearest_rank() {
        let s = Summary::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).expect("samples");
        assert_eq!((s.n, s.median, s.min, s.max), (5, 3.0, 1.0, 5.0));
        assert_eq!(s.p95, 5.0);
        let even = Summary::of(&[1.0, 2.0, 3.0, 4.0]).expect("samples");
        assert_eq!(even.median, 2.5);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&hundred).expect("samples");
        assert_eq!((s.p95, s.p99), (95.0, 99.0));
    }

    #[test]
    fn no_samples_no_summary_and_no_verdict() {
        assert!(Summary::of(&[]).is_none());
        assert!(Summary::of(&[f64::NAN]).is_none());
        let row = Row::new("x", "ms", &[], "runc", &[1.0]).target(Target::RatioAtMost { max: 1.0 });
        assert_eq!((row.ratio, row.met), (None, None));
    }

    #[test]
    fn ratio_targets_compare_medians() {
        let row = Row::new("x", "ms", &[1.0, 2.0, 3.0], "runc", &[10.0, 10.0])
            .target(Target::RatioAtMost { max: 0.25 });
        assert_eq!(row.ratio, Some(0.2));
        assert_eq!(row.met, Some(true));
        let row =
            Row::new("x", "ms", &[5.0], "runc", &[10.0]).target(Target::RatioAtMost { max: 0.25 });
        assert_eq!(row.met, Some(false));
        let row =
            Row::new("p99/median", "x", &[2.5], "-", &[]).target(Target::ValueAtMost { max: 2.0 });
        assert_eq!(row.met, Some(false));
    }

    #[test]
    fn the_table_has_a_line_per_row() {
        let rows = [Row::new("RunPodSandbox", "ms", &[1.0], "runc", &[2.0])];
        let t = table(&rows);
        assert_eq!(t.lines().count(), 3);
        assert!(t
            .lines()
            .nth(2)
            .is_some_and(|l| l.starts_with("RunPodSandbox") && l.contains("0.50")));
    }
}
