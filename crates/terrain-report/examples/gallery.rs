//! Writes one example of every chart kind (PNG and SVG) into a folder:
//! `cargo run -p terrain-report --example gallery -- /tmp/report-look`.

use std::path::PathBuf;

use terrain_report::chart::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "report-look".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let charts: Vec<(&str, AnyChart)> = vec![
        ("training", training().into()),
        ("density", density().into()),
        ("surface-heatmap", heatmap().into()),
        ("surface-3d", surface().into()),
        ("sensitivity", sensitivity().into()),
        (
            "sensitivity-vertical",
            BarChart {
                horizontal: false,
                size: None,
                ..sensitivity()
            }
            .into(),
        ),
        ("mdtree", tree().into()),
        ("embedding", embedding(false).into()),
        ("embedding-values", embedding(true).into()),
    ];
    for (name, chart) in charts {
        for ext in ["png", "svg"] {
            let path = dir.join(format!("{name}.{ext}"));
            chart.save(&path)?;
            println!("{}", path.display());
        }
    }
    Ok(())
}

/// Training curves: loss (log) over error, train and test.
fn training() -> LineChart {
    let epochs = 0..60;
    let curve = |a: f64, b: f64, c: f64| -> Vec<(f64, f64)> {
        epochs
            .clone()
            .map(|e| (e as f64, a * (-(e as f64) / b).exp() + c))
            .collect()
    };
    LineChart {
        title: "Training run resnet18-w16, seed 3".into(),
        panels: vec![
            Panel {
                title: "Loss".into(),
                x_label: "epoch".into(),
                y_label: "cross-entropy loss (nats)".into(),
                series: vec![
                    Series::new("train", curve(2.2, 8.0, 0.002)),
                    Series::new("test", curve(1.6, 10.0, 0.45)),
                ],
                log_y: true,
                ..Default::default()
            },
            Panel {
                title: "Error".into(),
                x_label: "epoch".into(),
                y_label: "classification error (%)".into(),
                series: vec![
                    Series::new("train", curve(80.0, 7.0, 0.0)),
                    Series::new("test", curve(70.0, 9.0, 12.0)),
                ],
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// A Hessian spectral density with peaks at both ends of its range.
fn density() -> LineChart {
    let peaks = [
        (-4.0, 0.02, 0.05),
        (0.0, 0.05, 1.0),
        (0.3, 0.1, 0.3),
        (48.0, 0.4, 0.02),
    ];
    let pts = (0..=800)
        .map(|i| {
            let x = -4.5 + 54.0 * i as f64 / 800.0;
            let y: f64 = peaks
                .iter()
                .map(|(m, s, w)| {
                    w * (-(x - m) * (x - m) / (2.0 * s * s)).exp()
                        / (s * (2.0 * std::f64::consts::PI).sqrt())
                })
                .sum();
            (x, y + 1e-7)
        })
        .collect();
    LineChart::single(Panel {
        title: "Hessian eigenvalue density (SLQ, 10 runs × 90 steps)".into(),
        x_label: "eigenvalue λ".into(),
        y_label: "density".into(),
        series: vec![Series::new("density", pts)],
        log_y: true,
        ..Default::default()
    })
}

/// A 2-D loss surface: a bowl around A with a second, shallower minimum near B.
fn grid() -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let c: Vec<f64> = (0..61).map(|i| -1.0 + i as f64 / 30.0).collect();
    let z = c
        .iter()
        .map(|&b| {
            c.iter()
                .map(|&a| {
                    let bowl = 0.05 + 1.6 * (a * a + 0.7 * b * b) + 0.3 * a * b;
                    let dip = 0.8 * (-((a - 0.6).powi(2) + (b + 0.55).powi(2)) / 0.03).exp();
                    bowl - dip
                })
                .collect()
        })
        .collect();
    (c.clone(), c, z)
}

fn heatmap() -> Heatmap {
    let (x, y, z) = grid();
    Heatmap {
        title: "Loss surface around checkpoint A (filter-normalised directions)".into(),
        x_label: "direction 1 (α)".into(),
        y_label: "direction 2 (β)".into(),
        z_label: "train loss (nats)".into(),
        x,
        y,
        z,
        log_z: true,
        marks: vec![Mark::new(0.0, 0.0, "A"), Mark::new(0.6, -0.55, "B")],
        ..Default::default()
    }
}

fn surface() -> Surface3d {
    let (x, y, z) = grid();
    Surface3d {
        title: "Loss landscape around checkpoint A".into(),
        x_label: "direction 1 (α)".into(),
        y_label: "direction 2 (β)".into(),
        z_label: "train loss (nats)".into(),
        x,
        y,
        z,
        ..Default::default()
    }
}

fn sensitivity() -> BarChart {
    let names = [
        "petal length (cm)",
        "petal width (cm)",
        "sepal length (cm)",
        "sepal width (cm)",
        "pixel mean",
        "pixel variance",
        "edge density",
        "hue",
        "saturation",
        "noise level",
    ];
    let d1 = [0.82, 0.64, 0.31, 0.22, 0.15, 0.12, 0.09, 0.05, 0.03, 0.01];
    let d2 = [0.45, 0.52, 0.12, 0.30, 0.05, 0.07, 0.11, 0.02, 0.04, 0.02];
    BarChart {
        title: "Input-feature sensitivity (mean over 512 test samples)".into(),
        category_label: "input feature".into(),
        value_label: "mean |∂loss/∂x| (nats per unit)".into(),
        categories: names.iter().map(|s| s.to_string()).collect(),
        series: vec![
            BarSeries::new("first derivative", d1.to_vec())
                .with_errors(d1.iter().map(|v| 0.04 + v * 0.1).collect()),
            BarSeries::new("second derivative", d2.to_vec())
                .with_errors(d2.iter().map(|v| 0.03 + v * 0.15).collect()),
        ],
        horizontal: true,
        size: None,
    }
}

fn tree() -> TreeDiagram {
    let leaf = |t: &str, c: &str| TreeNode::leaf(t).with_category(c);
    TreeDiagram {
        title: "MD tree: diagnosis of a trained network".into(),
        root: TreeNode::split(
            "train error > 0.1?\n(n=1 012 checkpoints)",
            vec![
                (
                    "yes".into(),
                    TreeNode::split(
                        "Hessian trace > 1e3?",
                        vec![
                            (
                                "yes".into(),
                                leaf(
                                    "optimizer temperature\ntoo high (n=23)",
                                    "temperature too high",
                                ),
                            ),
                            (
                                "no".into(),
                                TreeNode::split(
                                    "mode connectivity < -0.2?",
                                    vec![
                                        (
                                            "yes".into(),
                                            leaf(
                                                "poorly connected\nlandscape (n=57)",
                                                "temperature too high",
                                            ),
                                        ),
                                        (
                                            "no".into(),
                                            leaf(
                                                "model too small\nfor the data (n=141)",
                                                "model too small",
                                            ),
                                        ),
                                    ],
                                ),
                            ),
                        ],
                    ),
                ),
                (
                    "no".into(),
                    TreeNode::split(
                        "CKA similarity < 0.9?",
                        vec![
                            (
                                "yes".into(),
                                leaf("well trained,\nwell sized (n=512)", "healthy"),
                            ),
                            (
                                "no".into(),
                                TreeNode::split(
                                    "top eigenvalue > 50?",
                                    vec![
                                        (
                                            "yes".into(),
                                            leaf(
                                                "sharp minimum: lower\nthe temperature (n=88)",
                                                "temperature too low",
                                            ),
                                        ),
                                        (
                                            "no".into(),
                                            leaf(
                                                "over-parameterised,\nconverged (n=191)",
                                                "healthy",
                                            ),
                                        ),
                                    ],
                                ),
                            ),
                        ],
                    ),
                ),
            ],
        ),
        legend_title: "diagnosis".into(),
        size: None,
    }
}

fn embedding(values: bool) -> ScatterChart {
    let mut points = Vec::new();
    for k in 0..60 {
        let t = k as f64 * 0.7;
        let cat = ["SGD", "Adam", "SAM"][k % 3];
        let (cx, cy) = [(0.0, 0.0), (3.0, 1.0), (1.5, 3.0)][k % 3];
        let mut p = ScatterPoint::new(
            cx + t.sin() * (1.0 + 0.01 * k as f64),
            cy + (t * 1.3).cos() * 0.8,
        );
        if values {
            p.value = Some(0.01 * (1.0 + k as f64).powf(1.5));
        } else {
            p.category = Some(cat.into());
        }
        if k < 3 {
            p.label = Some(format!("run {k}"));
        }
        points.push(p);
    }
    ScatterChart {
        title: if values {
            "Landscape embedding coloured by test loss".into()
        } else {
            "Landscape embedding of 60 runs (MDS)".into()
        },
        x_label: "MDS coordinate 1".into(),
        y_label: "MDS coordinate 2".into(),
        value_label: "test loss (nats)".into(),
        log_value: values,
        points,
        size: None,
    }
}
