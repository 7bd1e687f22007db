//! `cargo xtask reproduce mdtree`: Table B of the MD tree paper (Zhou et al., ICML 2024;
//! methods.md §2.6) from the authors' public metric tables, beside the published figures.
//!
//! Each case fits on sampled configurations of the clean collection and tests on the noisy one,
//! averaged over seeds 42, 90, 38, 18, 72. The MD tree column must match to ±0.01 (the paper
//! truncates to two decimals), the decision-tree baselines within 2.5 points. A second table
//! holds further points of methods.md §2.6 (the authors' scripts as written, re-run, one
//! decimal), which must match to the decimal. The command fails when a figure does not match.
//! A third table (no published counterpart) sets terrain's single-checkpoint trees
//! (`mdtree-single`: no mode connectivity, no CKA) beside the MD tree on the same protocol.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde::Serialize;
use terrain_diagnose::evaluate::{EvalConfig, Method, evaluate};
use terrain_diagnose::question::Question;
use terrain_diagnose::table::{MetricTable, PAPER_TABLES};
use terrain_report::{Format, Table};

/// Arguments of `cargo xtask reproduce mdtree`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory holding dataframe_normal_public.csv and dataframe_noise_public.csv [default:
    /// the copies shipped in crates/terrain-diagnose/data/mdtree].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output format: table, json or csv.
    #[arg(long, default_value = "table")]
    format: Format,
}

/// One case of Table B.
struct Case {
    case: u32,
    task: &'static str,
    question: Question,
    sample: &'static str,
    /// Published (Hyper+DT, Valid+DT, MD tree).
    paper: [f64; 3],
}

const CASES: [Case; 5] = [
    Case {
        case: 1,
        task: "Q1, dataset transfer, 8 random cells",
        question: Question::Temp,
        sample: "random:8",
        paper: [49.56, 72.82, 87.70],
    },
    Case {
        case: 2,
        task: "Q1, scale transfer, data <= 5K",
        question: Question::Temp,
        sample: "data-limit:1",
        paper: [64.74, 51.73, 75.89],
    },
    Case {
        case: 3,
        task: "Q1, scale transfer, params <= 0.011M (w=2)",
        question: Question::Temp,
        sample: "width-limit:2",
        paper: [60.12, 67.55, 82.56],
    },
    Case {
        case: 4,
        task: "Q2 width vs batch, 1 random data fraction",
        question: Question::Width,
        sample: "random-data:1",
        paper: [53.54, 55.79, 74.10],
    },
    Case {
        case: 5,
        task: "Q2 width vs batch, data <= 5K",
        question: Question::Width,
        sample: "data-limit:1",
        paper: [53.54, 63.61, 78.16],
    },
];

/// Tolerances: the MD tree (deterministic) and the CART baselines (scikit-learn version drift).
const MD_TOLERANCE: f64 = 0.01;
const DT_TOLERANCE: f64 = 2.5;

#[derive(Serialize)]
struct Row {
    case: u32,
    task: &'static str,
    sample: &'static str,
    n_train: String,
    n_test: usize,
    hyper_dt: f64,
    hyper_dt_paper: f64,
    valid_dt: f64,
    valid_dt_paper: f64,
    md_tree: f64,
    md_tree_paper: f64,
    ok: bool,
}

/// Runs `cargo xtask reproduce mdtree`.
pub fn run(args: Args) -> Result<()> {
    let dir = args.data.unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crates/terrain-diagnose/data/mdtree")
    });
    let clean = MetricTable::read(&dir.join(PAPER_TABLES.0))?;
    let noisy = MetricTable::read(&dir.join(PAPER_TABLES.1))?;
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for c in &CASES {
        let sample = c.sample.parse()?;
        let mut acc = [0.0; 3];
        let mut n_train = String::new();
        let mut n_test = 0;
        for (i, method) in [Method::HyperDt, Method::ValidDt, Method::MdTree]
            .into_iter()
            .enumerate()
        {
            let e = evaluate(&clean, &noisy, &EvalConfig::new(c.question, method, sample))?;
            acc[i] = e.accuracy;
            if method == Method::MdTree {
                let (lo, hi) = (
                    e.n_train.iter().min().copied().unwrap_or(0),
                    e.n_train.iter().max().copied().unwrap_or(0),
                );
                n_train = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                };
                n_test = e.n_test;
            }
        }
        // The paper truncates to two decimals: compare the truncated figure.
        let shown = |a: f64| (a * 100.0 + 1e-9).floor() / 100.0;
        let md_ok = (shown(acc[2]) - c.paper[2]).abs() <= MD_TOLERANCE + 1e-9;
        let dt_ok = (0..2).all(|i| (acc[i] - c.paper[i]).abs() <= DT_TOLERANCE);
        if !md_ok {
            failures.push(format!(
                "case {}: MD tree {:.3} vs published {:.2}",
                c.case, acc[2], c.paper[2]
            ));
        }
        if !dt_ok {
            failures.push(format!(
                "case {}: a DT baseline is more than {DT_TOLERANCE} points off",
                c.case
            ));
        }
        let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
        rows.push(Row {
            case: c.case,
            task: c.task,
            sample: c.sample,
            n_train,
            n_test,
            hyper_dt: r3(acc[0]),
            hyper_dt_paper: c.paper[0],
            valid_dt: r3(acc[1]),
            valid_dt_paper: c.paper[1],
            md_tree: r3(acc[2]),
            md_tree_paper: c.paper[2],
            ok: md_ok && dt_ok,
        });
    }
    let other = other_points(&clean, &noisy, &mut failures)?;
    let single = single_checkpoint(&clean, &noisy)?;
    if args.format == Format::Json {
        let doc = serde_json::json!({
            "table_b": serde_json::to_value(&rows)?,
            "other_points": serde_json::to_value(&other)?,
            "single_checkpoint": serde_json::to_value(&single)?,
        });
        terrain_report::table::print_value(Format::Json, &doc);
        if !failures.is_empty() {
            bail!("Table B not reproduced:\n{}", failures.join("\n"));
        }
        return Ok(());
    }
    let table = Table::from_rows(&rows)?;
    print!("{}", table.render(args.format));
    if args.format == Format::Table {
        println!(
            "Diagnosis accuracy (%) on the noisy collection, mean over seeds 42, 90, 38, 18, 72; \
             *_paper: the published figures (truncated to two decimals). MD tree must match to \
             ±{MD_TOLERANCE}, the DT baselines within {DT_TOLERANCE} points."
        );
    }
    println!();
    print!("{}", Table::from_rows(&other)?.render(args.format));
    if args.format == Format::Table {
        println!(
            "Other points: the authors' scripts as written (every CART with random_state 42), \
             re-run on these tables (methods.md §2.6, one decimal); must match to ±0.05."
        );
    }
    println!();
    print!("{}", Table::from_rows(&single)?.render(args.format));
    if args.format == Format::Table {
        println!(
            "Single-checkpoint trees (terrain's; no published figures): the same protocol, 8 \
             random cells, paper bounds; md_tree is the paper's tree of the question."
        );
    }
    if !failures.is_empty() {
        bail!("Table B not reproduced:\n{}", failures.join("\n"));
    }
    Ok(())
}

#[derive(Serialize)]
struct OtherRow {
    task: &'static str,
    sample: String,
    method: &'static str,
    terrain: f64,
    reference: f64,
    ok: bool,
}

/// Further points of methods.md §2.6 (the authors' code re-run with scipy 1.17.1 and
/// scikit-learn 1.9.1, one decimal): Q1 dataset transfer over the number of cells, and the data
/// question. Their script passes random_state 42 to every CART.
fn other_points(
    clean: &MetricTable,
    noisy: &MetricTable,
    failures: &mut Vec<String>,
) -> Result<Vec<OtherRow>> {
    let mut points: Vec<(&'static str, Question, String, Method, f64)> = Vec::new();
    let md = [81.2, 82.0, 87.7, 88.9, 88.8];
    let valid = [72.0, 71.3, 73.5, 75.7, 78.9];
    for (i, k) in [2, 4, 8, 16, 24].into_iter().enumerate() {
        let task = "Q1, dataset transfer";
        points.push((
            task,
            Question::Temp,
            format!("random:{k}"),
            Method::MdTree,
            md[i],
        ));
        points.push((
            task,
            Question::Temp,
            format!("random:{k}"),
            Method::ValidDt,
            valid[i],
        ));
    }
    let task = "Q2 data vs batch (width >= 32)";
    for (method, reference) in [
        (Method::MdTree, 76.7),
        (Method::ValidDt, 69.1),
        (Method::HyperDt, 61.2),
    ] {
        points.push((
            task,
            Question::Data,
            "random-width:1".into(),
            method,
            reference,
        ));
    }
    let mut rows = Vec::new();
    for (task, question, sample, method, reference) in points {
        let mut cfg = EvalConfig::new(question, method, sample.parse()?);
        cfg.dt_random_state = Some(42);
        let acc = evaluate(clean, noisy, &cfg)?.accuracy;
        let ok = ((acc * 10.0).round() / 10.0 - reference).abs() < 1e-9;
        if !ok {
            failures.push(format!(
                "{task} {sample} {method}: {acc:.3} vs {reference:.1}"
            ));
        }
        rows.push(OtherRow {
            task,
            sample,
            method: method.name(),
            terrain: (acc * 1000.0).round() / 1000.0,
            reference,
            ok,
        });
    }
    Ok(rows)
}

/// One row of the single-checkpoint comparison.
#[derive(Debug, Serialize)]
struct SingleRow {
    question: Question,
    sample: &'static str,
    n_test: usize,
    md_tree: f64,
    single_tree: f64,
    valid_dt: f64,
}

/// The single-checkpoint trees beside the MD tree and Valid+DT, per question, on `random:8`.
fn single_checkpoint(clean: &MetricTable, noisy: &MetricTable) -> Result<Vec<SingleRow>> {
    let r3 = |v: f64| (v * 1000.0).round() / 1000.0;
    let sample = "random:8";
    [Question::Temp, Question::Width, Question::Data]
        .into_iter()
        .map(|q| {
            let acc = |m: Method| -> Result<(f64, usize)> {
                let e = evaluate(clean, noisy, &EvalConfig::new(q, m, sample.parse()?))?;
                Ok((e.accuracy, e.n_test))
            };
            let (md, n_test) = acc(Method::MdTree)?;
            Ok(SingleRow {
                question: q,
                sample,
                n_test,
                md_tree: r3(md),
                single_tree: r3(acc(Method::MdTreeSingle)?.0),
                valid_dt: r3(acc(Method::ValidDt)?.0),
            })
        })
        .collect()
}
