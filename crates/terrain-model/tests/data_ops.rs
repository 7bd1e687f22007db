//! Dataset operations: validation, split, subsets, label noise, standardisation, batches, mixup.

use candle_core::{DType, Device, Tensor};
use terrain_model::Error;
use terrain_model::data::{self, Batch, Dataset, Targets, Task, builtin, mixup, mixup_params};

fn classes(y: Vec<u32>) -> Targets {
    let n = y.len();
    Targets::Classes(Tensor::from_vec(y, n, &Device::Cpu).unwrap())
}

fn x_of(rows: usize, cols: usize) -> Tensor {
    let v: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
}

/// The first feature of every row, used as a row id (features are `row * cols + j`).
fn row_ids(x: &Tensor, cols: usize) -> Vec<usize> {
    let v: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
    v.chunks(cols).map(|r| r[0] as usize / cols).collect()
}

fn labels(d: &Dataset) -> Vec<u32> {
    d.labels().unwrap().unwrap()
}

#[test]
fn new_validates_empty_dataset() {
    let x = Tensor::zeros((0, 3), DType::F32, &Device::Cpu).unwrap();
    let err = Dataset::new(
        "nothing",
        x,
        classes(vec![]),
        Task::Classification { classes: 2 },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::EmptyDataset { ref name } if name == "nothing"),
        "{err:?}"
    );
}

#[test]
fn new_rejects_label_out_of_range_naming_the_row() {
    let err = Dataset::new(
        "toy",
        x_of(4, 2),
        classes(vec![0, 1, 3, 1]),
        Task::Classification { classes: 3 },
    )
    .unwrap_err();
    match &err {
        Error::LabelOutOfRange {
            row,
            label,
            classes,
            ..
        } => {
            assert_eq!((*row, *label, *classes), (2, 3, 3))
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("row 2"), "{err}");
    // Negative labels too.
    let y = Targets::Classes(Tensor::new(&[0i64, -1], &Device::Cpu).unwrap());
    let err = Dataset::new("toy", x_of(2, 2), y, Task::Classification { classes: 2 }).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                row: 1,
                label: -1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn new_rejects_nan_naming_tensor_and_index() {
    let mut v: Vec<f32> = vec![0.0; 12];
    v[7] = f32::NAN;
    let x = Tensor::from_vec(v, (4, 3), &Device::Cpu).unwrap();
    let err = Dataset::new(
        "toy",
        x,
        classes(vec![0, 1, 0, 1]),
        Task::Classification { classes: 2 },
    )
    .unwrap_err();
    match &err {
        Error::NonFinite { name, index, .. } => assert_eq!((name.as_str(), *index), ("x", 7)),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("index 7"), "{err}");
    let y = Targets::Values(Tensor::new(&[1.0f32, f32::INFINITY], &Device::Cpu).unwrap());
    let err = Dataset::new("reg", x_of(2, 2), y, Task::Regression { outputs: 1 }).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite { ref name, index: 1, .. } if name == "y"),
        "{err:?}"
    );
}

#[test]
fn new_checks_shapes_and_task_fit() {
    let err = Dataset::new(
        "toy",
        x_of(4, 2),
        classes(vec![0, 1, 0]),
        Task::Classification { classes: 2 },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::ShapeMismatch { ref name, .. } if name == "y"),
        "{err:?}"
    );
    let x1 = Tensor::new(&[1f32, 2., 3.], &Device::Cpu).unwrap();
    assert!(
        Dataset::new(
            "toy",
            x1,
            classes(vec![0, 1, 0]),
            Task::Classification { classes: 2 }
        )
        .is_err()
    );
    let y = Targets::Values(Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap());
    let err = Dataset::new("reg", x_of(4, 2), y, Task::Regression { outputs: 3 }).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
    let y = Targets::Values(Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap());
    assert!(
        Dataset::new(
            "reg",
            x_of(4, 2),
            y.clone(),
            Task::Classification { classes: 2 }
        )
        .is_err()
    );
    // A [N] regression target becomes [N, 1]; f64 inputs become f32.
    let x64 = x_of(4, 2).to_dtype(DType::F64).unwrap();
    let d = Dataset::new("reg", x64, y, Task::Regression { outputs: 1 }).unwrap();
    assert_eq!(d.y.tensor().dims(), &[4, 1]);
    assert_eq!(d.x.dtype(), DType::F32);
    assert!(
        Dataset::new(
            "reg",
            x_of(4, 2),
            classes(vec![0; 4]),
            Task::Regression { outputs: 1 }
        )
        .is_err()
    );
}

#[test]
fn subset_picks_rows_and_rejects_bad_indices() {
    let d = Dataset::new(
        "toy",
        x_of(5, 2),
        classes(vec![0, 1, 0, 1, 0]),
        Task::Classification { classes: 2 },
    )
    .unwrap();
    let s = d.subset(&[4, 0, 4]).unwrap();
    assert_eq!(row_ids(&s.x, 2), vec![4, 0, 4]);
    assert_eq!(labels(&s), vec![0, 0, 0]);
    let err = d.subset(&[1, 5]).unwrap_err();
    assert!(err.to_string().contains("index 5"), "{err}");
    assert!(d.subset(&[]).is_err());
}

#[test]
fn split_sizes_and_stratification() {
    let d = builtin::load("digits").unwrap();
    let (train, test) = d.split(0.8, 0).unwrap();
    assert_eq!((train.len(), test.len()), (1438, 359));
    let all = d.class_counts().unwrap().unwrap();
    let tr = train.class_counts().unwrap().unwrap();
    let te = test.class_counts().unwrap().unwrap();
    for c in 0..10 {
        assert_eq!(tr[c] + te[c], all[c]);
        let share = all[c] as f64 * 0.8;
        assert!(
            (tr[c] as f64 - share).abs() < 1.0,
            "class {c}: {} vs {share}",
            tr[c]
        );
    }
    // Same seed, same split; the parts are disjoint and cover the data.
    let toy = Dataset::new(
        "toy",
        x_of(30, 2),
        classes((0..30).map(|i| (i % 3) as u32).collect()),
        Task::Classification { classes: 3 },
    )
    .unwrap();
    let (a, b) = toy.split(0.5, 7).unwrap();
    let (a2, _) = toy.split(0.5, 7).unwrap();
    assert_eq!(row_ids(&a.x, 2), row_ids(&a2.x, 2));
    let mut ids = row_ids(&a.x, 2);
    ids.extend(row_ids(&b.x, 2));
    ids.sort_unstable();
    assert_eq!(ids, (0..30).collect::<Vec<_>>());
    // Regression splits too.
    let (tr, te) = builtin::load("diabetes").unwrap().split(0.75, 1).unwrap();
    assert_eq!((tr.len(), te.len()), (332, 110));
}

#[test]
fn split_rejects_bad_fractions() {
    let d = builtin::load("iris").unwrap();
    for f in [0.0, 1.0, -0.5, 1.5, f64::NAN, 0.001, 0.999] {
        let err = d.split(f, 0).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{f}: {err:?}");
    }
}

#[test]
fn subset_fraction_is_stratified_and_ordered() {
    let d = builtin::load("iris").unwrap();
    let s = d.subset_fraction(0.2, 3).unwrap();
    assert_eq!(s.len(), 30);
    assert_eq!(s.class_counts().unwrap().unwrap(), vec![10, 10, 10]);
    assert_eq!(d.subset_fraction(1.0, 3).unwrap().len(), 150);
    assert!(d.subset_fraction(0.0, 3).is_err());
    assert!(d.subset_fraction(1.2, 3).is_err());
}

#[test]
fn label_noise_flips_exactly_the_requested_count_to_other_labels() {
    let d = builtin::load("digits").unwrap();
    let before = labels(&d);
    let (noisy, rows) = d.with_label_noise_rows(0.1, 5).unwrap();
    let after = labels(&noisy);
    let changed: Vec<usize> = (0..before.len())
        .filter(|&i| before[i] != after[i])
        .collect();
    assert_eq!(changed.len(), (0.1f64 * 1797.0).round() as usize);
    assert_eq!(changed, rows);
    assert!(after.iter().all(|&l| l < 10));
    // The new labels spread over the other classes.
    let mut seen = [false; 10];
    for &r in &rows {
        seen[after[r] as usize] = true;
    }
    assert!(seen.iter().all(|&s| s));
    // Same seed, same noise; inputs untouched.
    assert_eq!(labels(&d.with_label_noise(0.1, 5).unwrap()), after);
    assert_eq!(
        noisy.x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        d.x.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
    // Binary: every chosen row flips; fraction 1 flips all.
    let bc = builtin::load("breast-cancer").unwrap();
    let b0 = labels(&bc);
    let b1 = labels(&bc.with_label_noise(1.0, 0).unwrap());
    assert!(b0.iter().zip(&b1).all(|(a, b)| a != b));
    assert_eq!(labels(&bc.with_label_noise(0.0, 0).unwrap()), b0);
    assert!(matches!(
        bc.with_label_noise(1.5, 0),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(
        builtin::load("boston")
            .unwrap()
            .with_label_noise(0.1, 0)
            .is_err()
    );
}

#[test]
fn standardizer_gives_zero_mean_unit_std() {
    let d = builtin::load("breast-cancer").unwrap();
    let s = d.standardizer().unwrap();
    assert_eq!(s.mean.dims(), &[30]);
    let z = s.apply(&d).unwrap();
    let x = z.x.to_dtype(DType::F64).unwrap();
    let mean: Vec<f64> = x.mean(0).unwrap().to_vec1().unwrap();
    let var: Vec<f64> = x.sqr().unwrap().mean(0).unwrap().to_vec1().unwrap();
    for j in 0..30 {
        assert!(mean[j].abs() < 1e-5, "feature {j}: mean {}", mean[j]);
        assert!(
            (var[j].sqrt() - 1.0).abs() < 1e-4,
            "feature {j}: std {}",
            var[j].sqrt()
        );
    }
    // Constant features (digits' border pixels) get std 1, so they stay finite (all zero).
    let digits = builtin::load("digits").unwrap();
    let s = digits.standardizer().unwrap();
    let std: Vec<f32> = s.std.to_vec1().unwrap();
    assert_eq!(std[0], 1.0);
    let z = s.apply(&digits).unwrap();
    let col0: Vec<f32> =
        z.x.narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
    assert!(col0.iter().all(|&v| v == 0.0));
    // Works per pixel on image-shaped data, and on bare tensors of the sample shape.
    let img = digits.reshape_inputs(&[1, 8, 8]).unwrap();
    let si = img.standardizer().unwrap();
    assert_eq!(si.mean.dims(), &[1, 8, 8]);
    let one = img.x.narrow(0, 0, 3).unwrap();
    assert_eq!(si.apply_tensor(&one).unwrap().dims(), &[3, 1, 8, 8]);
    assert!(si.apply(&digits).is_err());
}

#[test]
fn reshape_inputs_checks_element_count() {
    let d = builtin::load("digits").unwrap();
    assert_eq!(
        d.reshape_inputs(&[1797, 1, 8, 8]).unwrap().x.dims(),
        &[1797, 1, 8, 8]
    );
    let err = d.reshape_inputs(&[1, 7, 7]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
}

#[test]
fn batches_cover_all_rows_exactly_once() {
    let d = Dataset::new(
        "toy",
        x_of(103, 2),
        classes((0..103).map(|i| (i % 2) as u32).collect()),
        Task::Classification { classes: 2 },
    )
    .unwrap();
    assert_eq!(d.num_batches(10, false), 11);
    assert_eq!(d.num_batches(10, true), 10);
    for seed in [None, Some(4)] {
        let batches: Vec<Batch> = d
            .batches(10, seed, false)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(batches.len(), 11);
        assert_eq!(batches.last().unwrap().len(), 3);
        let mut ids = Vec::new();
        for b in &batches {
            let got = row_ids(&b.x, 2);
            // Targets travel with their rows.
            let y: Vec<u32> = b.y.tensor().to_vec1().unwrap();
            assert!(got.iter().zip(&y).all(|(&r, &l)| (r % 2) as u32 == l));
            ids.extend(got);
        }
        if seed.is_some() {
            assert_ne!(ids, (0..103).collect::<Vec<_>>(), "shuffled");
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..103).collect::<Vec<_>>());
    }
    // drop_last: only full batches, no row twice.
    let it = d.batches(10, Some(1), true).unwrap();
    assert_eq!(it.len(), 10);
    let mut ids: Vec<usize> = it.flat_map(|b| row_ids(&b.unwrap().x, 2)).collect();
    assert_eq!(ids.len(), 100);
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100);
    // Same seed, same order; different seeds differ.
    let order = |s| -> Vec<usize> {
        d.batches(10, Some(s), false)
            .unwrap()
            .flat_map(|b| row_ids(&b.unwrap().x, 2))
            .collect()
    };
    assert_eq!(order(9), order(9));
    assert_ne!(order(9), order(10));
    assert!(matches!(
        d.batches(0, None, false),
        Err(Error::InvalidConfig { .. })
    ));
    assert_eq!(d.num_batches(200, true), 0);
}

#[test]
fn mixup_rows_sum_to_one_and_lambda_matches() {
    let d = builtin::load("iris").unwrap();
    let batch = d
        .batches(32, Some(0), false)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    let (lambda, perm) = mixup_params(32, 0.4, 11).unwrap();
    assert!((0.0..=1.0).contains(&lambda));
    let mixed = mixup(&batch, 0.4, 3, 11).unwrap();
    let Targets::Soft(soft) = &mixed.y else {
        panic!("soft targets expected")
    };
    assert_eq!(soft.dims(), &[32, 3]);
    let p: Vec<Vec<f32>> = soft.to_vec2().unwrap();
    let y: Vec<u32> = batch.y.tensor().to_vec1().unwrap();
    for (i, row) in p.iter().enumerate() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let mut want = [0f64; 3];
        want[y[i] as usize] += lambda;
        want[y[perm[i]] as usize] += 1.0 - lambda;
        for c in 0..3 {
            assert!((row[c] as f64 - want[c]).abs() < 1e-6, "row {i}");
        }
    }
    let x: Vec<Vec<f32>> = batch.x.to_vec2().unwrap();
    let xm: Vec<Vec<f32>> = mixed.x.to_vec2().unwrap();
    for i in 0..32 {
        for j in 0..4 {
            let want = lambda * x[i][j] as f64 + (1.0 - lambda) * x[perm[i]][j] as f64;
            assert!((xm[i][j] as f64 - want).abs() < 1e-4);
        }
    }
    // Regression values are mixed linearly with the same lambda.
    let reg = builtin::load("boston").unwrap();
    let rb = reg.subset(&[0, 1, 2, 3]).unwrap().full_batch();
    let (l, perm) = mixup_params(4, 1.0, 2).unwrap();
    let m = mixup(&rb, 1.0, 0, 2).unwrap();
    let Targets::Values(v) = &m.y else { panic!() };
    let v: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
    let y: Vec<f32> = rb.y.tensor().flatten_all().unwrap().to_vec1().unwrap();
    for i in 0..4 {
        assert!((v[i] as f64 - (l * y[i] as f64 + (1.0 - l) * y[perm[i]] as f64)).abs() < 1e-3);
    }
    assert!(matches!(
        mixup(&batch, 0.0, 3, 0),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        mixup(&batch, -1.0, 3, 0),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn targets_helpers() {
    let t = classes(vec![2, 0, 1]);
    assert_eq!(t.len(), 3);
    let idx = Tensor::new(&[2u32, 2], &Device::Cpu).unwrap();
    assert_eq!(
        t.index_select(&idx)
            .unwrap()
            .tensor()
            .to_vec1::<u32>()
            .unwrap(),
        vec![1, 1]
    );
    assert_eq!(t.to_dtype(DType::F64).unwrap().tensor().dtype(), DType::U32);
    let v = Targets::Values(Tensor::zeros((3, 1), DType::F32, &Device::Cpu).unwrap());
    assert_eq!(v.to_dtype(DType::F64).unwrap().tensor().dtype(), DType::F64);
    assert!(matches!(
        v.to_device(&Device::Cpu).unwrap(),
        Targets::Values(_)
    ));
    let _ = data::Task::Regression { outputs: 1 };
}
