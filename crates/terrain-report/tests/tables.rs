//! Tables (terminal, CSV, JSON, parquet) and typed records with a schema version.

use serde::{Deserialize, Serialize};
use serde_json::json;
use terrain_report::{
    Cell, Error, Format, Table,
    record::{self, Document, Record},
    table,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    name: String,
    params: u64,
    loss: f64,
    converged: bool,
    note: Option<String>,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "mlp".into(),
            params: 1_234,
            loss: 0.5,
            converged: true,
            note: None,
        },
        Row {
            name: "cnn, wide".into(),
            params: 56,
            loss: 1.25e-7,
            converged: false,
            note: Some("said \"hi\"\nthen left".into()),
        },
    ]
}

#[test]
fn a_table_from_serialisable_rows() {
    let t = Table::from_rows(&rows()).unwrap();
    assert_eq!(t.columns, ["name", "params", "loss", "converged", "note"]);
    assert_eq!(t.rows[0][1], Cell::Int(1234));
    assert_eq!(t.rows[1][2], Cell::Float(1.25e-7));
    assert_eq!(t.rows[0][4], Cell::Null);
}

#[test]
fn terminal_tables_align_and_right_align_numbers() {
    let mut t = Table::new(["model", "params", "loss"]);
    t.push(vec!["mlp".into(), 1234i64.into(), 0.5.into()])
        .unwrap();
    t.push(vec!["resnet18".into(), 11i64.into(), Cell::Null])
        .unwrap();
    assert_eq!(
        t.to_terminal(),
        "model     params    loss\n\
         mlp         1234  0.5000\n\
         resnet18      11       -\n"
    );
    let e = t.push(vec![Cell::Null]).unwrap_err().to_string();
    assert!(
        e.contains("row 2") && e.contains("1 cells for 3 columns"),
        "{e}"
    );
}

#[test]
fn csv_quotes_commas_quotes_and_newlines() {
    let t = Table::from_rows(&rows()).unwrap();
    assert_eq!(
        t.to_csv(),
        "name,params,loss,converged,note\n\
         mlp,1234,0.5,true,\n\
         \"cnn, wide\",56,0.000000125,false,\"said \"\"hi\"\"\nthen left\"\n"
    );
    assert_eq!(table::csv_field("plain"), "plain");
    assert_eq!(table::csv_field("a\rb"), "\"a\rb\"");
}

#[test]
fn json_round_trips() {
    let t = Table::from_rows(&rows()).unwrap();
    let v = t.to_json();
    let back: Vec<Row> = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(back, rows());
    assert_eq!(Table::from_json_rows(v.as_array().unwrap()).unwrap(), t);
    let text = t.render(Format::Json);
    let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed, v);
}

#[test]
fn rows_must_be_flat() {
    let e = Table::from_json_rows(&[json!({"a": 1}), json!({"a": 2, "b": [1, 2]})]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("row 1") && msg.contains("\"b\""), "{msg}");
    let e = Table::from_json_rows(&[json!(3)]).unwrap_err().to_string();
    assert!(
        e.contains("row 0") && e.contains("expected an object"),
        "{e}"
    );
    // Nested objects become dotted columns.
    let t = Table::from_json_rows(&[json!({"a": {"b": 1}, "c": "x"})]).unwrap();
    assert_eq!(t.columns, ["a.b", "c"]);
}

#[test]
fn values_render_in_every_format() {
    let v = json!({"sharpness": 12.5, "eigen": [{"k": 1, "value": 3.0}, {"k": 2, "value": 1.5}]});
    let t = table::render_value(Format::Table, &v);
    assert!(
        t.starts_with("sharpness  12.5000\n\neigen:\nk   value\n1  3.0000\n"),
        "{t}"
    );
    let j = table::render_value(Format::Json, &v);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&j).unwrap(), v);
    let c = table::render_value(Format::Csv, &v);
    assert_eq!(
        c,
        "key,value\nsharpness,12.5\neigen[0].k,1\neigen[0].value,3\neigen[1].k,2\neigen[1].value,1.5\n"
    );
    let only = json!({"rows": [{"a": 1, "b": "x,y"}]});
    assert_eq!(table::render_value(Format::Csv, &only), "a,b\n1,\"x,y\"\n");
}

#[test]
fn tables_save_after_their_extension() {
    let dir = tempfile::tempdir().unwrap();
    let t = Table::from_rows(&rows()).unwrap();
    let csv = dir.path().join("t.csv");
    t.save(&csv).unwrap();
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), t.to_csv());
    t.save(&dir.path().join("t.json")).unwrap();
    let e = t.save(&dir.path().join("t.xlsx")).unwrap_err().to_string();
    assert!(e.contains("t.xlsx") && e.contains(".csv"), "{e}");
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_round_trips_through_polars() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.parquet");
    let t = Table::from_rows(&rows()).unwrap();
    t.save(&path).unwrap();
    let df = ParquetReader::new(std::fs::File::open(&path).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 2);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, t.columns);
    let params = df.column("params").unwrap().i64().unwrap();
    assert_eq!((params.get(0), params.get(1)), (Some(1234), Some(56)));
    let loss = df.column("loss").unwrap().f64().unwrap();
    assert_eq!((loss.get(0), loss.get(1)), (Some(0.5), Some(1.25e-7)));
    let conv = df.column("converged").unwrap().bool().unwrap();
    assert_eq!((conv.get(0), conv.get(1)), (Some(true), Some(false)));
    let note = df.column("note").unwrap().str().unwrap();
    assert_eq!(note.get(0), None);
    assert_eq!(note.get(1), Some("said \"hi\"\nthen left"));
    let name = df.column("name").unwrap().str().unwrap();
    assert_eq!(name.get(1), Some("cnn, wide"));
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Metrics {
    sharpness: f64,
    trace: Option<f64>,
}
impl Record for Metrics {
    const KIND: &'static str = "metrics";
    const SCHEMA_VERSION: u32 = 2;
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Diagnosis {
    label: String,
}
impl Record for Diagnosis {
    const KIND: &'static str = "diagnosis";
    const SCHEMA_VERSION: u32 = 2;
}

#[test]
fn records_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    let m = Metrics {
        sharpness: 12.5,
        trace: None,
    };
    record::write_json(&path, &m).unwrap();
    assert_eq!(record::read_json::<Metrics>(&path).unwrap(), m);
    let doc: Document<Metrics> =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        doc,
        Document::new(Metrics {
            sharpness: 12.5,
            trace: None
        })
    );
    assert_eq!((doc.kind.as_str(), doc.schema_version), ("metrics", 2));
}

#[test]
fn record_mismatches_name_the_file_and_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    record::write_json(
        &path,
        &Metrics {
            sharpness: 1.0,
            trace: Some(2.0),
        },
    )
    .unwrap();
    let e = record::read_json::<Diagnosis>(&path).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::KindMismatch { .. }));
    assert!(
        msg.contains("m.json") && msg.contains("\"diagnosis\"") && msg.contains("\"metrics\""),
        "{msg}"
    );

    std::fs::write(
        &path,
        r#"{"kind": "metrics", "schema_version": 1, "data": {"sharpness": 1.0}}"#,
    )
    .unwrap();
    let e = record::read_json::<Metrics>(&path).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::SchemaVersionMismatch {
                expected: 2,
                found: 1,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("m.json") && msg.contains("version 1") && msg.contains("version 2"),
        "{msg}"
    );

    std::fs::write(
        &path,
        r#"{"kind": "metrics", "schema_version": 2, "data": {"sharp": 1.0}}"#,
    )
    .unwrap();
    let msg = record::read_json::<Metrics>(&path).unwrap_err().to_string();
    assert!(msg.contains("m.json") && msg.contains("sharpness"), "{msg}");

    std::fs::write(&path, r#"{"sharpness": 1.0}"#).unwrap();
    let msg = record::read_json::<Metrics>(&path).unwrap_err().to_string();
    assert!(msg.contains("no \"kind\""), "{msg}");

    std::fs::write(&path, "not json").unwrap();
    let msg = record::read_json::<Metrics>(&path).unwrap_err().to_string();
    assert!(
        msg.contains("m.json") && msg.contains("not valid JSON"),
        "{msg}"
    );

    let msg = record::read_json::<Metrics>(&dir.path().join("absent.json"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("reading") && msg.contains("absent.json"),
        "{msg}"
    );
}
