//! Safetensors dataset files: round trip and every bad-input case.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use terrain_model::Error;
use terrain_model::data::{Dataset, Targets, Task, builtin, file};

fn write(path: &Path, tensors: Vec<(&str, Tensor)>, meta: Option<HashMap<String, String>>) {
    safetensors::serialize_to_file(tensors, meta, path).unwrap();
}

fn x_of(rows: usize, cols: usize) -> Tensor {
    let v: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5).collect();
    Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
}

#[test]
fn round_trip_classification_and_regression() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["digits", "diabetes"] {
        let d = builtin::load(name).unwrap();
        let path = dir.path().join(format!("{name}.safetensors"));
        file::save(&d, &path).unwrap();
        let back = file::load(&path).unwrap();
        assert_eq!(back.name, d.name);
        assert_eq!(back.task, d.task);
        assert_eq!(back.feature_names, d.feature_names);
        assert_eq!(back.x.dims(), d.x.dims());
        let a: Vec<f32> = d.x.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = back.x.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b);
        let ya =
            d.y.tensor()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
        let yb = back
            .y
            .tensor()
            .flatten_all()
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(ya, yb);
        assert_eq!(
            std::mem::discriminant(&back.y),
            std::mem::discriminant(&d.y),
            "{name}: same kind of targets"
        );
    }
    // Image-shaped inputs and classes beyond the largest label survive too.
    let d = builtin::load("digits")
        .unwrap()
        .subset(&[0, 1, 2])
        .unwrap()
        .reshape_inputs(&[1, 8, 8])
        .unwrap();
    let path = dir.path().join("img.safetensors");
    file::save(&d, &path).unwrap();
    let back = file::load(&path).unwrap();
    assert_eq!(back.x.dims(), &[3, 1, 8, 8]);
    assert_eq!(back.task, Task::Classification { classes: 10 });
}

#[test]
fn plain_files_infer_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.safetensors");
    let y = Tensor::new(&[0i64, 3, 1], &Device::Cpu).unwrap();
    write(
        &path,
        vec![("x", x_of(3, 2).to_dtype(DType::F64).unwrap()), ("y", y)],
        None,
    );
    let d = file::load(&path).unwrap();
    assert_eq!(d.name, "plain");
    assert_eq!(d.task, Task::Classification { classes: 4 });
    assert_eq!(d.x.dtype(), DType::F32);
    // "classes" in the metadata wins over max + 1.
    let mut meta = HashMap::new();
    meta.insert("classes".to_string(), "10".to_string());
    let y = Tensor::new(&[0u8, 3, 1], &Device::Cpu).unwrap();
    write(&path, vec![("x", x_of(3, 2)), ("y", y)], Some(meta));
    assert_eq!(
        file::load(&path).unwrap().task,
        Task::Classification { classes: 10 }
    );
    // Float targets make a regression, [N] or [N, k].
    let y = Tensor::new(&[0.5f32, 1.5, 2.5], &Device::Cpu).unwrap();
    write(&path, vec![("x", x_of(3, 2)), ("y", y)], None);
    let d = file::load(&path).unwrap();
    assert_eq!(d.task, Task::Regression { outputs: 1 });
    assert!(matches!(&d.y, Targets::Values(t) if t.dims() == [3, 1]));
    let y = Tensor::zeros((3, 4), DType::F16, &Device::Cpu).unwrap();
    write(
        &path,
        vec![("x", x_of(3, 2).to_dtype(DType::BF16).unwrap()), ("y", y)],
        None,
    );
    assert_eq!(
        file::load(&path).unwrap().task,
        Task::Regression { outputs: 4 }
    );
}

#[test]
fn missing_file_is_io_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.safetensors");
    let err = file::load(&path).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.safetensors"), "{err}");
}

#[test]
fn truncated_file_is_safetensors_error_with_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    file::save(&builtin::load("iris").unwrap(), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = file::load(&path).unwrap_err();
    assert!(matches!(err, Error::Safetensors { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.safetensors"), "{err}");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    assert!(matches!(file::load(&path), Err(Error::Safetensors { .. })));
}

#[test]
fn missing_y_names_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("noy.safetensors");
    write(
        &path,
        vec![
            ("x", x_of(3, 2)),
            ("labels", Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap()),
        ],
        None,
    );
    let err = file::load(&path).unwrap_err();
    match &err {
        Error::MissingTensor {
            name, available, ..
        } => {
            assert_eq!(name, "y");
            assert!(available.contains("labels"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("noy.safetensors"), "{err}");
}

#[test]
fn row_count_mismatch_names_y() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mismatch.safetensors");
    write(
        &path,
        vec![
            ("x", x_of(3, 2)),
            ("y", Tensor::new(&[0u32, 1], &Device::Cpu).unwrap()),
        ],
        None,
    );
    let err = file::load(&path).unwrap_err();
    match &err {
        Error::ShapeMismatch {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(
                (name.as_str(), expected.as_slice(), found.as_slice()),
                ("y", &[3][..], &[2][..])
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("mismatch.safetensors"), "{err}");
    // x of rank 1 is a shape error on x.
    write(
        &path,
        vec![
            ("x", Tensor::new(&[1f32, 2.], &Device::Cpu).unwrap()),
            ("y", Tensor::new(&[0u32, 1], &Device::Cpu).unwrap()),
        ],
        None,
    );
    assert!(matches!(file::load(&path), Err(Error::ShapeMismatch { ref name, .. }) if name == "x"));
    // Integer x is a dtype error.
    write(
        &path,
        vec![
            ("x", Tensor::zeros((2, 2), DType::U8, &Device::Cpu).unwrap()),
            ("y", Tensor::new(&[0u32, 1], &Device::Cpu).unwrap()),
        ],
        None,
    );
    assert!(matches!(file::load(&path), Err(Error::DtypeMismatch { ref name, .. }) if name == "x"));
}

#[test]
fn labels_out_of_range_name_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("labels.safetensors");
    let y = Tensor::new(&[0i64, 1, -2], &Device::Cpu).unwrap();
    write(&path, vec![("x", x_of(3, 2)), ("y", y)], None);
    let err = file::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                row: 2,
                label: -2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("labels.safetensors"), "{err}");
    let mut meta = HashMap::new();
    meta.insert("classes".to_string(), "2".to_string());
    let y = Tensor::new(&[0u32, 5, 1], &Device::Cpu).unwrap();
    write(&path, vec![("x", x_of(3, 2)), ("y", y)], Some(meta));
    let err = file::load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelOutOfRange {
                row: 1,
                label: 5,
                classes: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("row 1"), "{err}");
}

#[test]
fn nan_in_x_names_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nan.safetensors");
    let mut v = vec![0f32; 6];
    v[4] = f32::NAN;
    let x = Tensor::from_vec(v, (3, 2), &Device::Cpu).unwrap();
    write(
        &path,
        vec![
            ("x", x),
            ("y", Tensor::new(&[0u32, 1, 0], &Device::Cpu).unwrap()),
        ],
        None,
    );
    let err = file::load(&path).unwrap_err();
    match &err {
        Error::NonFinite {
            name,
            index,
            context,
            ..
        } => {
            assert_eq!((name.as_str(), *index), ("x", 4));
            assert!(context.contains("nan.safetensors"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_file_dataset_is_empty_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.safetensors");
    write(
        &path,
        vec![
            (
                "x",
                Tensor::zeros((0, 2), DType::F32, &Device::Cpu).unwrap(),
            ),
            ("y", Tensor::zeros(0, DType::U32, &Device::Cpu).unwrap()),
        ],
        None,
    );
    let err = file::load(&path).unwrap_err();
    assert!(matches!(err, Error::EmptyDataset { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.safetensors"), "{err}");
}

#[test]
fn save_creates_directories_and_an_unwritable_path_is_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let d: Dataset = builtin::load("iris").unwrap();
    let nested = dir.path().join("new").join("dir").join("d.safetensors");
    file::save(&d, &nested).unwrap();
    assert_eq!(file::load(&nested).unwrap().len(), d.len());
    // A parent that is a regular file cannot be created as a directory.
    let blocker = dir.path().join("plain-file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = file::save(&d, &blocker.join("d.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}
