//! Bad tables and settings: each a clear error naming the file, column, row or setting.
//!
//! The broken tables are edits of the paper's clean table (read from the shared data folder,
//! written to a temporary directory).

use std::path::{Path, PathBuf};

use terrain_diagnose::evaluate::{EvalConfig, Method, evaluate};
use terrain_diagnose::question::Question;
use terrain_diagnose::table::{MetricTable, PAPER_TABLES};
use terrain_diagnose::{Error, Sampling};

fn clean_csv() -> (PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mdtree");
    let path = dir.join(PAPER_TABLES.0);
    let text = std::fs::read_to_string(&path).unwrap();
    (path, text)
}

/// The clean table with `edit` applied to its (header, rows), written to `dir/name`.
fn edited(
    dir: &Path,
    name: &str,
    edit: impl Fn(&mut Vec<String>, &mut Vec<Vec<String>>),
) -> PathBuf {
    let (_, text) = clean_csv();
    let mut lines = text.lines();
    let mut header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    edit(&mut header, &mut rows);
    let mut out = header.join(",") + "\n";
    for r in rows {
        out += &(r.join(",") + "\n");
    }
    let p = dir.join(name);
    std::fs::write(&p, out).unwrap();
    p
}

fn col(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).unwrap()
}

/// Boxed: the error enum is large, and a test helper need not be lean.
fn eval(
    train: &Path,
    test: &Path,
    q: Question,
    m: Method,
    sample: &str,
) -> Result<f64, Box<Error>> {
    let train = MetricTable::read(train).map_err(Box::new)?;
    let test = MetricTable::read(test).map_err(Box::new)?;
    let cfg = EvalConfig::new(q, m, sample.parse().unwrap());
    evaluate(&train, &test, &cfg)
        .map(|e| e.accuracy)
        .map_err(Box::new)
}

#[test]
fn a_missing_column_is_named_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, _) = clean_csv();
    let p = edited(dir.path(), "no_mc.csv", |h, rows| {
        let i = col(h, "mode_connectivity_peak");
        h.remove(i);
        rows.iter_mut().for_each(|r| {
            r.remove(i);
        });
    });
    let e = eval(&p, &clean, Question::Temp, Method::MdTree, "random:8").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(*e, Error::MissingColumn { .. }), "{msg}");
    assert!(
        msg.contains("`mode_connectivity_peak`") && msg.contains("no_mc.csv"),
        "{msg}"
    );
    assert!(
        msg.contains("`hessian_t`"),
        "lists the columns there are: {msg}"
    );
}

#[test]
fn a_nan_metric_names_column_row_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, _) = clean_csv();
    let p = edited(dir.path(), "nan.csv", |h, rows| {
        let i = col(h, "hessian_t");
        rows[6][i] = "NaN".into();
    });
    let e = eval(&p, &clean, Question::Temp, Method::MdTree, "all").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            *e,
            Error::NonFinite {
                row: 7,
                line: 8,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("`hessian_t`") && msg.contains("row 7") && msg.contains("nan.csv"),
        "{msg}"
    );
    // An empty cell and text are refused the same way.
    let p = edited(dir.path(), "text.csv", |h, rows| {
        let i = col(h, "train_error");
        rows[2][i] = "n/a".into();
    });
    let msg = eval(&p, &clean, Question::Temp, Method::ValidDt, "all")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`train_error`") && msg.contains("row 3") && msg.contains("`n/a`"),
        "{msg}"
    );
}

#[test]
fn an_unknown_label_names_the_row_and_the_labels_known() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, _) = clean_csv();
    let p = edited(dir.path(), "label.csv", |h, rows| {
        let i = col(h, "bs_failure");
        rows[41][i] = "medium".into();
    });
    let e = eval(&clean, &p, Question::Temp, Method::MdTree, "random:8").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(*e, Error::UnknownLabel { row: 42, .. }), "{msg}");
    assert!(
        msg.contains("`medium`") && msg.contains("`bs_failure`") && msg.contains("`small`"),
        "{msg}"
    );
}

#[test]
fn an_empty_sample_says_which_sampling_and_table() {
    let (clean, _) = clean_csv();
    let e = eval(
        &clean,
        &clean,
        Question::Temp,
        Method::MdTree,
        "data-limit:0",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(*e, Error::EmptySample { .. }), "{msg}");
    assert!(
        msg.contains("data-limit:0") && msg.contains("keeps no rows"),
        "{msg}"
    );
    // More cells than the table has (13 x 10).
    let msg = eval(&clean, &clean, Question::Temp, Method::MdTree, "random:131")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("random:131") && msg.contains("131 of 130"),
        "{msg}"
    );
    // A data question on a width filter that keeps nothing.
    let train = MetricTable::read(&clean).unwrap();
    let mut cfg = EvalConfig::new(Question::Data, Method::MdTree, Sampling::All);
    cfg.min_width = Some(1e6);
    let msg = evaluate(&train, &train, &cfg).unwrap_err().to_string();
    assert!(msg.contains("keeps no rows"), "{msg}");
}

#[test]
fn labels_come_from_the_rfi_columns_without_a_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let (clean, text) = clean_csv();
    let noisy = clean.with_file_name(PAPER_TABLES.1);
    let p = edited(dir.path(), "nolabel.csv", |h, rows| {
        for name in ["bs_failure", "width_vs_batch", "data_vs_batch"] {
            let i = col(h, name);
            h.remove(i);
            rows.iter_mut().for_each(|r| {
                r.remove(i);
            });
        }
    });
    assert!(!std::fs::read_to_string(&p).unwrap().contains("small"));
    assert!(text.contains("small"));
    let derived = eval(&p, &noisy, Question::Temp, Method::MdTree, "width-limit:2").unwrap();
    let given = eval(
        &clean,
        &noisy,
        Question::Temp,
        Method::MdTree,
        "width-limit:2",
    )
    .unwrap();
    assert_eq!(derived, given);
    // ...and without either, the error names the RFI column.
    let p = edited(dir.path(), "norfi.csv", |h, rows| {
        for name in ["bs_failure", "rfi_dec_temp"] {
            let i = col(h, name);
            h.remove(i);
            rows.iter_mut().for_each(|r| {
                r.remove(i);
            });
        }
    });
    let msg = eval(&p, &noisy, Question::Temp, Method::MdTree, "all")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("`rfi_dec_temp`"), "{msg}");
}

#[test]
fn bad_settings_are_invalid_config_naming_the_field() {
    let (clean, _) = clean_csv();
    let t = MetricTable::read(&clean).unwrap();
    let cfg = EvalConfig::new(Question::Width, Method::MdTreeCka, Sampling::All);
    let msg = evaluate(&t, &t, &cfg).unwrap_err().to_string();
    assert!(msg.contains("method") && msg.contains("temp"), "{msg}");
    let mut cfg = EvalConfig::new(Question::Temp, Method::MdTree, Sampling::All);
    cfg.seeds.clear();
    assert!(
        evaluate(&t, &t, &cfg)
            .unwrap_err()
            .to_string()
            .contains("seeds")
    );
    // A file that is not there, or not a table.
    let e = MetricTable::read(Path::new("/nonexistent/table.csv")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/table.csv"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"not parquet").unwrap();
    let e = MetricTable::read(&junk).unwrap_err();
    assert!(e.to_string().contains("junk.parquet"), "{e}");
}

#[test]
fn a_parquet_table_reads_as_its_csv() {
    use polars::prelude::*;
    let (clean, _) = clean_csv();
    let noisy = clean.with_file_name(PAPER_TABLES.1);
    let dir = tempfile::tempdir().unwrap();
    let pq = dir.path().join("clean.parquet");
    let mut df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .try_into_reader_with_file_path(Some(clean.clone()))
        .unwrap()
        .finish()
        .unwrap();
    ParquetWriter::new(std::fs::File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    let from_pq = eval(&pq, &noisy, Question::Temp, Method::MdTree, "random:8").unwrap();
    let from_csv = eval(&clean, &noisy, Question::Temp, Method::MdTree, "random:8").unwrap();
    assert_eq!(from_pq, from_csv);
}

#[test]
fn a_table_without_labels_or_rfi_columns_and_a_semicolon_file_are_explained() {
    let (clean, text) = clean_csv();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("semicolons.csv");
    std::fs::write(&p, text.replace(',', ";")).unwrap();
    let msg = eval(&p, &clean, Question::Width, Method::MdTree, "all")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`width_vs_batch` is missing")
            && msg.contains("`rfi_inc_temp`")
            && msg.contains("comma-separated"),
        "{msg}"
    );
}
