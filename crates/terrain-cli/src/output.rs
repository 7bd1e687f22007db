//! Printing results as an aligned table or as JSON.

use serde_json::Value;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable aligned tables.
    Table,
    /// One JSON document.
    Json,
}

/// Prints `value` (a JSON object) in `format`. In table form, scalars become `key  value` rows and
/// arrays of objects become tables with a header.
pub fn print(format: Format, value: &Value) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Table => print!("{}", table(value)),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format_float(f),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// Floats with four significant decimals, switching to scientific notation for tiny/huge values.
pub fn format_float(f: f64) -> String {
    if f == 0.0 || (1e-3..1e6).contains(&f.abs()) {
        format!("{f:.4}")
    } else {
        format!("{f:.4e}")
    }
}

fn rows_table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn table(value: &Value) -> String {
    let Value::Object(map) = value else {
        return format!("{}\n", scalar(value));
    };
    let mut out = String::new();
    let mut kv = Vec::new();
    let mut sections = Vec::new();
    for (k, v) in map {
        match v {
            Value::Array(items) if items.iter().all(Value::is_object) && !items.is_empty() => {
                sections.push((k, items))
            }
            Value::Object(inner) => {
                for (ik, iv) in inner {
                    kv.push(vec![format!("{k}.{ik}"), scalar(iv)]);
                }
            }
            Value::Array(items) => kv.push(vec![
                k.clone(),
                items.iter().map(scalar).collect::<Vec<_>>().join(", "),
            ]),
            _ => kv.push(vec![k.clone(), scalar(v)]),
        }
    }
    out.push_str(&rows_table(&kv));
    for (name, items) in sections {
        out.push_str(&format!("\n{name}:\n"));
        let header: Vec<String> = items[0]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        let mut rows = vec![header.clone()];
        for it in items {
            rows.push(header.iter().map(|h| scalar(&it[h])).collect());
        }
        out.push_str(&rows_table(&rows));
    }
    out
}
