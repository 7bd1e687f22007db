//! Resumable eigenvalue solvers: a run stopped after `j` iterations (an injected stop) and
//! resumed from its state file gives exactly (bitwise, f64) the eigenpairs of an uninterrupted
//! run, for Lanczos (restarts included) and power iteration with deflation; states written with
//! other settings and damaged files are refused, naming the settings and the file.

use std::collections::BTreeMap;
use std::path::Path;

use terrain_curvature::{
    Error, HessianConfig, HessianOperator, LinearOperator, TopEigen,
    eigen::{self, LanczosConfig, PowerConfig},
    resume::{SolverState, StateFile, StateStore},
};
use terrain_model::{data, loss::LossKind};
use terrain_testkit::{dense_operator, model};

/// A state file that stops the solver (as a kill would) once it has kept `saves` states.
struct StopAfter {
    file: StateFile,
    saves: usize,
}

impl StateStore for StopAfter {
    fn load(
        &mut self,
        settings: &BTreeMap<String, String>,
    ) -> terrain_curvature::Result<Option<SolverState>> {
        self.file.load(settings)
    }

    fn save(
        &mut self,
        settings: &BTreeMap<String, String>,
        state: &SolverState,
    ) -> terrain_curvature::Result<()> {
        if self.saves == 0 {
            return Err(Error::Interrupted {
                solver: state.kind().into(),
                matvecs: state.matvecs(),
            });
        }
        self.file.save(settings, state)?;
        self.saves -= 1;
        Ok(())
    }
}

fn operator_settings() -> BTreeMap<String, String> {
    BTreeMap::from([("operator".to_string(), "iris mlp:4-6-3:tanh".to_string())])
}

/// Every number of both results, bit for bit, vectors included.
fn assert_identical(a: &TopEigen, b: &TopEigen, what: &str) {
    assert_eq!(a.matvecs, b.matvecs, "{what}: matvecs");
    assert_eq!(a.pairs.len(), b.pairs.len(), "{what}: pairs");
    for (i, (p, q)) in a.pairs.iter().zip(&b.pairs).enumerate() {
        assert_eq!(p.value.to_bits(), q.value.to_bits(), "{what}: value {i}");
        assert_eq!(
            p.residual.to_bits(),
            q.residual.to_bits(),
            "{what}: residual {i}"
        );
        assert_eq!(p.iterations, q.iterations, "{what}: iterations {i}");
        assert_eq!(p.converged, q.converged, "{what}: converged {i}");
        let (u, v) = (
            p.vector.to_vec1::<f64>().unwrap(),
            q.vector.to_vec1::<f64>().unwrap(),
        );
        assert!(
            u.iter().zip(&v).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{what}: vector {i}"
        );
    }
}

/// Runs `solve` stopped after `j` saved states, then resumed, for every `j` in `stops`, and
/// compares each with the uninterrupted run.
fn stop_and_resume(
    dir: &Path,
    stops: &[usize],
    solve: &dyn Fn(&mut dyn StateStore) -> terrain_curvature::Result<TopEigen>,
    name: &str,
) -> TopEigen {
    let whole = solve(&mut terrain_curvature::resume::NoState).unwrap();
    assert_eq!(whole.resumed_at, None);
    let mut resumed_somewhere = 0;
    for &j in stops {
        let path = dir.join(format!("{name}-{j}.safetensors"));
        let mut stopped = StopAfter {
            file: StateFile::new(&path, operator_settings()),
            saves: j,
        };
        match solve(&mut stopped) {
            Err(Error::Interrupted { matvecs, .. }) => {
                assert!(matvecs > 0, "{name}: stopped after {matvecs} products");
            }
            Ok(r) => {
                // Fewer iterations than j: nothing to resume.
                assert_identical(&r, &whole, name);
                continue;
            }
            Err(e) => panic!("{name}: {e}"),
        }
        let mut file = StateFile::new(&path, operator_settings());
        let resumed = solve(&mut file).unwrap();
        assert!(
            file.resumed(),
            "{name}: stopped after {j} states, not resumed"
        );
        let at = resumed.resumed_at.expect("a resumed run says so");
        assert!(at >= j.min(1), "{name}: resumed at {at}");
        assert_identical(
            &resumed,
            &whole,
            &format!("{name} stopped after {j} states"),
        );
        resumed_somewhere += 1;
    }
    assert!(
        resumed_somewhere >= stops.len() / 2,
        "{name}: too few stops"
    );
    whole
}

fn iris_hessian<'a>(m: &'a terrain_model::Model, d: &'a data::Dataset) -> HessianOperator<'a> {
    HessianOperator::new(
        m,
        d,
        HessianConfig {
            batch_size: 64,
            ..HessianConfig::new(LossKind::Ce)
        },
    )
    .unwrap()
}

#[test]
fn lanczos_resumes_bit_identically_on_a_model_hessian() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model("mlp:4-6-3:tanh", 1), terrain_testkit::iris(150));
    let h = iris_hessian(&m, &d);
    let config = LanczosConfig {
        top_k: 3,
        max_iter: 30,
        tol: 0.0,
        seed: 4,
        ..Default::default()
    };
    let whole = stop_and_resume(
        dir.path(),
        &[1, 2, 5, 11, 17, 25],
        &|store| eigen::lanczos_with_state(&h, &config, store),
        "lanczos",
    );
    assert_eq!(whole.pairs[0].iterations, 30);
}

#[test]
fn lanczos_resumes_across_restarts() {
    // Three distinct values: the first Krylov space is invariant after 3 steps, and the top 5
    // need restarts; stop before, at and after them.
    let values = [5.0, 5.0, 5.0, 1.0, 1.0, -1.0, 0.5];
    let p = values.len();
    let mut a = vec![0.0; p * p];
    for (i, v) in values.iter().enumerate() {
        a[i * p + i] = *v;
    }
    let op = dense_operator(&a, p);
    let config = LanczosConfig {
        top_k: 5,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let whole = stop_and_resume(
        dir.path(),
        &[1, 2, 3, 4, 5],
        &|store| eigen::lanczos_with_state(&op, &config, store),
        "restarts",
    );
    for (pair, w) in whole.pairs.iter().zip([5.0, 5.0, 5.0, 1.0, 1.0]) {
        assert!((pair.value - w).abs() < 1e-12, "{} vs {w}", pair.value);
    }
}

#[test]
fn power_iteration_with_deflation_resumes_bit_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model("mlp:4-6-3:tanh", 2), terrain_testkit::iris(150));
    let h = iris_hessian(&m, &d);
    let config = PowerConfig {
        top_k: 3,
        max_iter: 40,
        tol: 1e-6,
        seed: 7,
        ..Default::default()
    };
    let whole = eigen::power_iteration(&h, &config).unwrap();
    let first = whole.pairs[0].iterations;
    let second = first + whole.pairs[1].iterations;
    // Inside the first eigenpair, at its end (the pair found, the next not begun), inside the
    // second and the third.
    let stops = [1, 3, first - 1, first, first + 1, second + 1, second + 4];
    let again = stop_and_resume(
        dir.path(),
        &stops,
        &|store| eigen::power_iteration_with_state(&h, &config, store),
        "power",
    );
    assert_identical(&again, &whole, "plain and stateful runs");
    assert!(
        whole.pairs.iter().all(|p| p.iterations > 3),
        "{:?}",
        whole.pairs.iter().map(|p| p.iterations).collect::<Vec<_>>()
    );
}

#[test]
fn a_state_of_other_settings_or_a_damaged_file_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (m, d) = (model("mlp:4-6-3:tanh", 1), terrain_testkit::iris(150));
    let h = iris_hessian(&m, &d);
    let path = dir.path().join("state.safetensors");
    let config = LanczosConfig {
        top_k: 2,
        max_iter: 20,
        tol: 0.0,
        ..Default::default()
    };
    let mut stopped = StopAfter {
        file: StateFile::new(&path, operator_settings()),
        saves: 4,
    };
    assert!(matches!(
        eigen::lanczos_with_state(&h, &config, &mut stopped),
        Err(Error::Interrupted { matvecs: 5, .. })
    ));
    let refuse = |config: &LanczosConfig, settings: BTreeMap<String, String>| {
        let mut file = StateFile::new(&path, settings);
        eigen::lanczos_with_state(&h, config, &mut file)
            .unwrap_err()
            .to_string()
    };
    // Solver settings and the caller's operator settings, each named with both values.
    let e = refuse(
        &LanczosConfig {
            seed: 3,
            top_k: 3,
            ..config.clone()
        },
        operator_settings(),
    );
    assert!(
        e.contains("state.safetensors")
            && e.contains("seed (saved 0, now 3)")
            && e.contains("top_k (saved 2, now 3)"),
        "{e}"
    );
    let e = refuse(
        &config,
        BTreeMap::from([("operator".to_string(), "another model".to_string())]),
    );
    assert!(
        e.contains("operator (saved iris mlp:4-6-3:tanh, now another model)"),
        "{e}"
    );
    // Power iteration does not take a Lanczos state.
    let mut file = StateFile::new(&path, operator_settings());
    let e = eigen::power_iteration_with_state(&h, &PowerConfig::default(), &mut file)
        .unwrap_err()
        .to_string();
    assert!(e.contains("solver (saved lanczos, now power)"), "{e}");
    // The state survives all that: the right settings resume it.
    let mut file = StateFile::new(&path, operator_settings());
    let r = eigen::lanczos_with_state(&h, &config, &mut file).unwrap();
    assert_eq!(r.resumed_at, Some(4), "the state kept before the stop");
    assert_eq!(h.dim(), r.pairs[0].vector.dims1().unwrap());

    // Writes are atomic (temporary file + rename), so a kill cannot tear the file; a file damaged
    // otherwise, or not a state at all, is an error naming it.
    let bytes = std::fs::read(&path).unwrap();
    for (what, content) in [
        ("garbage", b"not a state file at all".to_vec()),
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&path, &content).unwrap();
        let mut file = StateFile::new(&path, operator_settings());
        let e = eigen::lanczos_with_state(&h, &config, &mut file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("state.safetensors"), "{what}: {e}");
    }
    // A safetensors file that is not a solver state (a checkpoint, say).
    terrain_model::checkpoint::save(&m, &path, &BTreeMap::new()).unwrap();
    let mut file = StateFile::new(&path, operator_settings());
    let e = eigen::lanczos_with_state(&h, &config, &mut file)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("state.safetensors") && e.contains("not an eigenvalue-solver state"),
        "{e}"
    );
    let file = StateFile::new(&path, operator_settings());
    file.remove().unwrap();
    assert!(!path.exists());
    file.remove().unwrap();
}
