//! Every chart kind renders to PNG and SVG from the same data; bad data is skipped or
//! reported, never panicked on.

use terrain_report::{Error, chart::*};

const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Decodes `bytes`, checks the size, and returns RGB rows.
fn decode(bytes: &[u8], size: Size) -> Vec<Vec<[u8; 3]>> {
    assert_eq!(bytes[..8], PNG_SIGNATURE);
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    assert_eq!((info.width, info.height), (size.width, size.height));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf[..info.buffer_size()]
        .chunks(info.width as usize * 3)
        .map(|row| row.chunks(3).map(|p| [p[0], p[1], p[2]]).collect())
        .collect()
}

/// Share of non-white pixels in the central region (where every chart has its plot).
fn ink_in_centre(img: &[Vec<[u8; 3]>]) -> f64 {
    let (h, w) = (img.len(), img[0].len());
    let mut ink = 0;
    let mut all = 0;
    for row in &img[h / 4..3 * h / 4] {
        for p in &row[w / 4..3 * w / 4] {
            all += 1;
            if *p != [255, 255, 255] {
                ink += 1;
            }
        }
    }
    ink as f64 / all as f64
}

fn check<C: Chart>(chart: &C, texts: &[&str], min_ink: f64) {
    let size = chart.size().unwrap();
    let png = chart.to_png().unwrap();
    let img = decode(&png, size);
    let ink = ink_in_centre(&img);
    assert!(
        ink > min_ink,
        "{}: only {ink} of the plot area is drawn",
        chart.describe()
    );
    let svg = chart.to_svg().unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..50.min(svg.len())]);
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    for t in texts {
        // plotters writes each text element's content on a line of its own.
        assert!(
            svg.contains(&format!("\n{t}\n</text>")),
            "{}: SVG lacks text {t:?}",
            chart.describe()
        );
    }
}

fn grid(n: usize, f: impl Fn(f64, f64) -> f64) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let c: Vec<f64> = (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64)
        .collect();
    let z = c
        .iter()
        .map(|&y| c.iter().map(|&x| f(x, y)).collect())
        .collect();
    (c.clone(), c, z)
}

fn line() -> LineChart {
    LineChart {
        title: "Training run".into(),
        panels: vec![
            Panel {
                title: "Loss".into(),
                x_label: "epoch".into(),
                y_label: "loss (nats)".into(),
                series: vec![
                    Series::new(
                        "train",
                        (0..20)
                            .map(|e| (e as f64, 2.0 / (1.0 + e as f64)))
                            .collect(),
                    ),
                    Series::new(
                        "test",
                        (0..20)
                            .map(|e| (e as f64, 2.5 / (1.0 + 0.5 * e as f64)))
                            .collect(),
                    ),
                ],
                log_y: true,
                ..Default::default()
            },
            Panel {
                title: "Error".into(),
                x_label: "epoch".into(),
                y_label: "error (%)".into(),
                series: vec![Series::new(
                    "train",
                    (0..20).map(|e| (e as f64, 50.0 - 2.0 * e as f64)).collect(),
                )],
                ..Default::default()
            },
        ],
        panel_size: None,
    }
}

fn heatmap() -> Heatmap {
    let (x, y, z) = grid(31, |a, b| a * a + 2.0 * b * b + 0.1);
    Heatmap {
        title: "Loss surface".into(),
        x_label: "alpha".into(),
        y_label: "beta".into(),
        z_label: "loss (nats)".into(),
        x,
        y,
        z,
        marks: vec![Mark::new(0.0, 0.0, "A")],
        ..Default::default()
    }
}

fn bars() -> BarChart {
    BarChart {
        title: "Sensitivity".into(),
        category_label: "feature".into(),
        value_label: "mean gradient".into(),
        categories: (0..6).map(|i| format!("feature {i}")).collect(),
        series: vec![
            BarSeries::new("d1", vec![6.0, 5.0, 4.0, 3.0, 2.0, 1.0]).with_errors(vec![0.5; 6]),
            BarSeries::new("d2", vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
        ],
        ..Default::default()
    }
}

fn surface() -> Surface3d {
    let (x, y, z) = grid(25, |a, b| a * a + b * b);
    Surface3d {
        title: "Landscape".into(),
        x_label: "alpha".into(),
        y_label: "beta".into(),
        z_label: "loss".into(),
        x,
        y,
        z,
        ..Default::default()
    }
}

fn tree() -> TreeDiagram {
    TreeDiagram {
        title: "MD tree".into(),
        root: TreeNode::split(
            "train error > 0.1?",
            vec![
                (
                    "yes".into(),
                    TreeNode::leaf("temperature too high\n(n=23)").with_category("hot"),
                ),
                (
                    "no".into(),
                    TreeNode::split(
                        "trace > 100?",
                        vec![
                            ("yes".into(), TreeNode::leaf("sharp").with_category("cold")),
                            ("no".into(), TreeNode::leaf("healthy").with_category("ok")),
                        ],
                    ),
                ),
            ],
        ),
        legend_title: "diagnosis".into(),
        size: None,
    }
}

fn scatter(values: bool) -> ScatterChart {
    ScatterChart {
        title: "Embedding".into(),
        x_label: "mds 1".into(),
        y_label: "mds 2".into(),
        value_label: "loss".into(),
        points: (0..30)
            .map(|i| {
                let t = i as f64 * 0.4;
                let mut p =
                    ScatterPoint::new(t.cos() * (1.0 + 0.05 * t), t.sin() * (1.0 + 0.05 * t));
                if values {
                    p.value = Some(t);
                } else {
                    p.category = Some(["sgd", "adam"][i % 2].into());
                }
                p.label = (i == 0).then(|| "start".into());
                p
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn every_chart_kind_renders_to_png_and_svg() {
    check(
        &line(),
        &[
            "Training run",
            "Loss",
            "Error",
            "epoch",
            "loss (nats)",
            "error (%)",
            "train",
            "test",
        ],
        0.01,
    );
    check(
        &heatmap(),
        &["Loss surface", "alpha", "beta", "loss (nats)", "A"],
        0.5,
    );
    check(
        &bars(),
        &[
            "Sensitivity",
            "feature",
            "mean gradient",
            "d1",
            "d2",
            "feature 0",
        ],
        0.05,
    );
    check(
        &BarChart {
            horizontal: true,
            ..bars()
        },
        &["Sensitivity", "feature 5", "mean gradient"],
        0.05,
    );
    check(&surface(), &["Landscape", "alpha", "beta", "loss"], 0.2);
    check(
        &tree(),
        &[
            "MD tree",
            "train error &gt; 0.1?",
            "(n=23)",
            "yes",
            "no",
            "healthy",
            "diagnosis:",
        ],
        0.02,
    );
    check(
        &scatter(false),
        &["Embedding", "mds 1", "mds 2", "sgd", "adam", "start"],
        0.003,
    );
    check(&scatter(true), &["Embedding", "loss"], 0.003);
}

#[test]
fn requested_size_is_honoured() {
    let c = Heatmap {
        size: Some(Size::new(333, 222)),
        ..heatmap()
    };
    decode(&c.to_png().unwrap(), Size::new(333, 222));
    let c = LineChart {
        panel_size: Some(Size::new(400, 300)),
        ..line()
    };
    decode(&c.to_png().unwrap(), Size::new(400, 640));
    let e = Heatmap {
        size: Some(Size::new(0, 10)),
        ..heatmap()
    }
    .to_png()
    .unwrap_err();
    assert!(matches!(e, Error::InvalidChart { .. }), "{e}");
}

#[test]
fn save_follows_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let c = AnyChart::from(line());
    let png = dir.path().join("x.png");
    c.save(&png).unwrap();
    assert_eq!(std::fs::read(&png).unwrap()[..8], PNG_SIGNATURE);
    let svg = dir.path().join("x.SVG");
    c.save(&svg).unwrap();
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    let jpg = dir.path().join("x.jpg");
    let e = c.save(&jpg).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("x.jpg") && msg.contains(".png") && msg.contains(".svg"),
        "{msg}"
    );
    assert!(!jpg.exists());
    // Only the two files: no temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let e = c.save(&dir.path().join("missing-dir/x.png")).unwrap_err();
    assert!(e.to_string().contains("missing-dir"), "{e}");
}

#[test]
fn a_peak_at_the_last_point_is_inside_the_range() {
    let pts: Vec<(f64, f64)> = (0..=50)
        .map(|i| (i as f64, (i as f64 / 10.0).exp()))
        .collect();
    for log_y in [false, true] {
        let panel = Panel {
            title: "density".into(),
            series: vec![Series::new("d", pts.clone())],
            log_y,
            ..Default::default()
        };
        let ((x0, x1), (y0, y1)) = panel.axis_ranges().unwrap();
        let top = if log_y { 5.0 / 10f64.ln() } else { 5f64.exp() };
        let bottom = if log_y { 0.0 } else { 1.0 };
        assert!(x0 < 0.0 && x1 > 50.0, "x range {x0}..{x1}");
        assert!(y1 > top && y0 < bottom, "y range {y0}..{y1}");
        // The last point sits a visible distance below the top of the range.
        let span = y1 - y0;
        assert!((y1 - top) / span > 0.03);
    }
    // In pixels: the peak's blue reaches the right part of the plot, and the blue pixels do not
    // touch the plot's top edge (its first grid row).
    let chart = LineChart::single(Panel {
        series: vec![Series::new("d", pts)],
        ..Default::default()
    });
    let img = decode(&chart.to_png().unwrap(), chart.size().unwrap());
    let blue = terrain_report::style::series_color(0);
    let is_blue = |p: &[u8; 3]| *p == [blue.0, blue.1, blue.2];
    let rows: Vec<usize> = (0..img.len())
        .filter(|&y| img[y].iter().any(is_blue))
        .collect();
    let cols: Vec<usize> = (0..img[0].len())
        .filter(|&x| img.iter().any(|r| is_blue(&r[x])))
        .collect();
    let top_blue = rows[0];
    let right_blue = *cols.last().unwrap();
    assert!(
        right_blue > img[0].len() * 3 / 4,
        "line ends at column {right_blue}"
    );
    // The top of the plotting area: where the y axis (the column with the longest run of axis
    // ink) begins.
    let ink = |p: &[u8; 3]| *p == [0x22, 0x22, 0x22];
    let axis_col = (0..img[0].len())
        .max_by_key(|&x| img.iter().filter(|r| ink(&r[x])).count())
        .unwrap();
    let frame_top = (0..img.len()).find(|&y| ink(&img[y][axis_col])).unwrap();
    assert!(
        top_blue >= frame_top + 10,
        "peak row {top_blue}, plot top {frame_top}"
    );
}

#[test]
fn non_finite_values_are_skipped() {
    let mut pts: Vec<(f64, f64)> = (0..30).map(|i| (i as f64, (i as f64).sin())).collect();
    pts[5].1 = f64::NAN;
    pts[6].0 = f64::INFINITY;
    pts[10].1 = f64::NEG_INFINITY;
    pts[20].1 = -1.0; // fine on a linear axis, skipped on a log one
    for log_y in [false, true] {
        let c = LineChart::single(Panel {
            title: "gaps".into(),
            series: vec![Series::new("s", pts.clone()), Series::new("empty", vec![])],
            log_y,
            log_x: true,
            ..Default::default()
        });
        c.to_png().unwrap();
        c.to_svg().unwrap();
    }
    let (x, y, mut z) = grid(9, |a, b| a + b);
    z[3][3] = f64::NAN;
    z[4][4] = f64::INFINITY;
    let h = Heatmap {
        x: x.clone(),
        y: y.clone(),
        z: z.clone(),
        log_z: true,
        ..Default::default()
    };
    h.to_png().unwrap();
    Surface3d {
        x,
        y,
        z,
        ..Default::default()
    }
    .to_png()
    .unwrap();
    let mut b = bars();
    b.series[0].values[2] = f64::NAN;
    b.series[0].errors[3] = f64::NAN;
    b.to_png().unwrap();
    let mut s = scatter(true);
    s.points[3].x = f64::NAN;
    s.points[4].value = Some(f64::NAN);
    s.to_png().unwrap();
}

#[test]
fn constant_data_draws() {
    let c = LineChart::single(Panel {
        series: vec![Series::new("flat", vec![(1.0, 3.0), (1.0, 3.0)])],
        log_y: true,
        ..Default::default()
    });
    c.to_png().unwrap();
    let (x, y, z) = grid(5, |_, _| 2.0);
    Heatmap {
        x: x.clone(),
        y: y.clone(),
        z: z.clone(),
        ..Default::default()
    }
    .to_png()
    .unwrap();
    Surface3d {
        x,
        y,
        z,
        ..Default::default()
    }
    .to_png()
    .unwrap();
    BarChart {
        categories: vec!["a".into()],
        series: vec![BarSeries::new("zero", vec![0.0])],
        ..Default::default()
    }
    .to_png()
    .unwrap();
    ScatterChart {
        points: vec![ScatterPoint::new(1.0, 1.0)],
        ..Default::default()
    }
    .to_svg()
    .unwrap();
}

fn nothing(e: Error) {
    assert!(matches!(e, Error::NothingToDraw { .. }), "{e}");
    assert!(e.to_string().contains("nothing to draw"));
}

#[test]
fn charts_with_nothing_drawable_are_errors() {
    let nan = LineChart::single(Panel {
        title: "all nan".into(),
        series: vec![Series::new("s", vec![(f64::NAN, 1.0), (1.0, f64::NAN)])],
        ..Default::default()
    });
    let e = nan.to_png().unwrap_err();
    assert!(e.to_string().contains("\"all nan\""), "{e}");
    nothing(e);
    nothing(nan.to_svg().unwrap_err());
    nothing(LineChart::default().to_png().unwrap_err());
    let neg = LineChart::single(Panel {
        series: vec![Series::new("s", vec![(1.0, -1.0), (2.0, 0.0)])],
        log_y: true,
        ..Default::default()
    });
    nothing(neg.to_png().unwrap_err());
    let (x, y, z) = grid(4, |_, _| f64::NAN);
    nothing(
        Heatmap {
            x: x.clone(),
            y: y.clone(),
            z: z.clone(),
            ..Default::default()
        }
        .to_png()
        .unwrap_err(),
    );
    nothing(
        Surface3d {
            x,
            y,
            z,
            ..Default::default()
        }
        .to_png()
        .unwrap_err(),
    );
    nothing(Heatmap::default().to_png().unwrap_err());
    nothing(BarChart::default().to_png().unwrap_err());
    nothing(
        BarChart {
            categories: vec!["a".into()],
            series: vec![BarSeries::new("s", vec![f64::NAN])],
            ..Default::default()
        }
        .to_png()
        .unwrap_err(),
    );
    nothing(ScatterChart::default().to_png().unwrap_err());
    nothing(TreeDiagram::default().to_png().unwrap_err());
}

#[test]
fn inconsistent_data_is_an_error_naming_the_field() {
    let mut h = heatmap();
    h.z[2].pop();
    let e = h.to_png().unwrap_err().to_string();
    assert!(e.contains("z row 2") && e.contains("Loss surface"), "{e}");
    let mut h = heatmap();
    h.x.swap(0, 1);
    let e = h.to_svg().unwrap_err().to_string();
    assert!(e.contains("x must increase"), "{e}");
    let mut b = bars();
    b.series[1].values.pop();
    let e = b.to_png().unwrap_err().to_string();
    assert!(
        e.contains("\"d2\"") && e.contains("5 values for 6 categories"),
        "{e}"
    );
    let mut s = scatter(true);
    s.points[0].category = Some("x".into());
    assert!(matches!(
        s.to_png().unwrap_err(),
        Error::InvalidChart { .. }
    ));
}

#[test]
fn trees_grow_with_their_leaves() {
    let small = tree();
    let mut big = tree();
    big.root.children.push(TreeEdge {
        label: "maybe".into(),
        child: TreeNode::leaf("a third answer with a very long text"),
    });
    let (a, b) = (small.size().unwrap(), big.size().unwrap());
    assert!(b.width > a.width + 100, "{a:?} {b:?}");
    decode(&big.to_png().unwrap(), b);
}
