//! Built-in datasets and source-string resolution.

use terrain_model::Error;
use terrain_model::data::{self, LoadOptions, Targets, Task, builtin};

fn labels(d: &data::Dataset) -> Vec<u32> {
    d.labels().unwrap().expect("hard labels")
}

#[test]
fn digits_shape_labels_and_values() {
    let d = builtin::load("digits").unwrap();
    assert_eq!(d.name, "digits");
    assert_eq!(d.x.dims(), &[1797, 64]);
    assert_eq!(d.input_shape(), vec![64]);
    assert_eq!(d.task, Task::Classification { classes: 10 });
    assert_eq!(d.output_dim(), 10);
    let x: Vec<f32> = d.x.flatten_all().unwrap().to_vec1().unwrap();
    assert!(x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(x.iter().cloned().fold(0f32, f32::max), 1.0);
    // Raw values are integer counts 0..16, scaled by 1/16.
    assert!(x.iter().all(|&v| (v * 16.0).fract() == 0.0));
    // The first digit of the UCI set is a 0 whose first row reads 0 0 5 13 9 1 0 0.
    assert_eq!(
        &x[..8],
        &[
            0.0,
            0.0,
            5.0 / 16.0,
            13.0 / 16.0,
            9.0 / 16.0,
            1.0 / 16.0,
            0.0,
            0.0
        ]
    );
    let y = labels(&d);
    assert_eq!(y[0], 0);
    let counts = d.class_counts().unwrap().unwrap();
    assert_eq!(counts.len(), 10);
    assert!(
        counts.iter().all(|&c| (170..=190).contains(&c)),
        "{counts:?}"
    );
    let names = d.feature_names.as_ref().unwrap();
    assert_eq!(names.len(), 64);
    assert_eq!(names[0], "pixel_0_0");
    assert_eq!(names[10], "pixel_1_2");
    assert_eq!(names[63], "pixel_7_7");
    let img = d.reshape_inputs(&[1, 8, 8]).unwrap();
    assert_eq!(img.x.dims(), &[1797, 1, 8, 8]);
    assert_eq!(img.input_shape(), vec![1, 8, 8]);
}

#[test]
fn every_builtin_loads_with_the_right_shape_and_targets() {
    let expected = [
        ("digits", 1797, 64, Task::Classification { classes: 10 }),
        ("iris", 150, 4, Task::Classification { classes: 3 }),
        (
            "breast-cancer",
            569,
            30,
            Task::Classification { classes: 2 },
        ),
        ("diabetes", 442, 10, Task::Regression { outputs: 1 }),
        ("boston", 506, 13, Task::Regression { outputs: 1 }),
    ];
    assert_eq!(builtin::NAMES.len(), expected.len());
    for (name, n, f, task) in expected {
        assert!(builtin::NAMES.contains(&name));
        let d = builtin::load(name).unwrap();
        assert_eq!(d.x.dims(), &[n, f], "{name}");
        assert_eq!(d.len(), n);
        assert_eq!(d.task, task, "{name}");
        assert_eq!(d.y.len(), n);
        assert_eq!(d.feature_names.as_ref().unwrap().len(), f, "{name}");
        match (&d.y, task) {
            (Targets::Classes(_), Task::Classification { classes }) => {
                let counts = d.class_counts().unwrap().unwrap();
                assert_eq!(counts.len(), classes);
                assert!(counts.iter().all(|&c| c > 0), "{name}: every class present");
            }
            (Targets::Values(t), Task::Regression { outputs }) => {
                assert_eq!(t.dims(), &[n, outputs]);
            }
            _ => panic!("{name}: targets do not fit the task"),
        }
    }
    // Spot checks of well-known values.
    let iris = builtin::load("iris").unwrap();
    assert_eq!(iris.class_counts().unwrap().unwrap(), vec![50, 50, 50]);
    let bc = builtin::load("breast_cancer").unwrap();
    assert_eq!(bc.class_counts().unwrap().unwrap(), vec![212, 357]);
    let boston = builtin::load("boston").unwrap();
    assert_eq!(boston.feature_names.as_ref().unwrap()[12], "LSTAT");
    let price: Vec<f32> = boston.y.tensor().flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(price[0], 24.0);
}

#[test]
fn load_resolves_builtin_names_loosely() {
    let opts = LoadOptions::default();
    for s in [
        "digits",
        "DIGITS",
        "breast_cancer",
        "Breast-Cancer",
        " iris ",
    ] {
        assert!(data::load(s, &opts).is_ok(), "{s}");
    }
}

#[test]
fn load_resolves_synthetic_sources_with_the_seed() {
    let a = data::load(
        "synthetic:spiral:n=50",
        &LoadOptions {
            data_dir: None,
            seed: 3,
        },
    )
    .unwrap();
    let b = data::load("synthetic:spiral:n=50,seed=3", &LoadOptions::default()).unwrap();
    assert_eq!(a.len(), 50);
    let xa: Vec<f32> = a.x.flatten_all().unwrap().to_vec1().unwrap();
    let xb: Vec<f32> = b.x.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(xa, xb);
}

#[test]
fn unknown_source_lists_what_is_known() {
    let err = data::load("imagenet", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Dataset { .. }), "{err:?}");
    let msg = err.to_string();
    for name in builtin::NAMES
        .iter()
        .chain(data::synthetic::KINDS)
        .chain(data::HUB_NAMES)
    {
        assert!(msg.contains(name), "`{name}` missing from: {msg}");
    }
}

#[test]
fn missing_safetensors_path_is_an_io_error() {
    let err = data::load("no/such/file.safetensors", &LoadOptions::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/file.safetensors"));
}

#[test]
fn hub_sets_not_yet_fetched_are_a_typed_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        data_dir: Some(dir.path().to_path_buf()),
        seed: 0,
    };
    let err = data::load("fashion-mnist:test", &opts).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::NotFetched { name, .. } if name == "fashion-mnist"),
        "{err:?}"
    );
    assert!(msg.contains("not downloaded yet"), "{msg}");
    assert!(msg.contains("fashion-mnist-test.safetensors"), "{msg}");
    let err = data::load("mnist:validation", &opts).unwrap_err();
    assert!(err.to_string().contains("validation"));
}

#[test]
fn fetched_hub_sets_load_from_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let iris = builtin::load("iris").unwrap();
    let mut fake = iris.subset(&[0, 1, 2, 60, 120]).unwrap();
    fake.name = "mnist".into();
    data::file::save(&fake, &data::hub_path(dir.path(), "mnist", "train")).unwrap();
    data::file::save(&fake, &data::hub_path(dir.path(), "mnist", "test")).unwrap();
    let opts = LoadOptions {
        data_dir: Some(dir.path().to_path_buf()),
        seed: 0,
    };
    let train = data::load("mnist", &opts).unwrap();
    assert_eq!((train.len(), train.name.as_str()), (5, "mnist"));
    let test = data::load("MNIST:test", &opts).unwrap();
    assert_eq!((test.len(), test.name.as_str()), (5, "mnist:test"));
}

#[test]
fn data_dir_is_a_path() {
    // The environment decides the value; it is never empty.
    assert!(!data::data_dir().as_os_str().is_empty());
}
