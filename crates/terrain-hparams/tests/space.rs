//! Search spaces: the README's and the module's examples parse; enumeration order, seeds and the
//! mapping of each hyperparameter onto the training recipe; shards from scheduler variables.

use std::path::Path;

use terrain_hparams::{
    space::{HpValue, Space},
    sweep::Shard,
};
use terrain_model::train::Optimizer;

fn toml_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let l = line.trim_start_matches("//! ");
        let l = if line.trim() == "//!" { "" } else { l };
        match (&mut cur, l.trim()) {
            (None, "```toml") => cur = Some(String::new()),
            (Some(c), "```") => {
                out.push(std::mem::take(c));
                cur = None;
            }
            (Some(c), _) => {
                c.push_str(l);
                c.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_documented_spaces_parse() {
    let readme = include_str!("../../../README.md");
    let module = include_str!("../src/space.rs");
    let blocks: Vec<String> = toml_blocks(readme)
        .into_iter()
        .chain(toml_blocks(module))
        .collect();
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    for b in &blocks {
        let s = Space::parse(Path::new("doc.toml"), b).unwrap_or_else(|e| panic!("{e}\n{b}"));
        assert!(s.len() >= 24, "{}", s.len());
        let c = &s.configurations()[s.len() - 1];
        let (spec, objective) = s.run_spec(c, "digits").unwrap();
        assert!(objective.is_none());
        assert_eq!(spec.training.epochs, 20);
        assert_eq!(spec.data.validation, 0.2);
    }
}

#[test]
fn enumeration_seeds_and_recipes() {
    let text = r#"
seed = 11
arch = "mlp:4-{hidden}-3:{activation}"
[fixed]
activation = "tanh"
[grid]
optimizer = ["adam", "sgd"]
momentum = [0.5, 0.9]
width = [8, 16]
depth = [1, 2]
weight_decay = [0, 1e-4]
[fidelity]
epochs = [2, 3]
subset = [0.5, 1.0]
"#;
    let s = Space::parse(Path::new("s.toml"), text).unwrap();
    assert_eq!(s.len(), 2 * 2 * 2 * 2 * 2 * 2);
    // Grid names in ascending order, the last fastest; subsets outermost.
    let names: Vec<&str> = s.grid.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["depth", "momentum", "optimizer", "weight_decay", "width"]
    );
    let cs = s.configurations();
    assert_eq!(cs[1].values[4], HpValue::Int(16));
    assert_eq!(cs[1].values[3], HpValue::Int(0));
    assert_eq!(cs[32].subset, 1.0);
    // A grid point's seed does not depend on its fidelity, and differs between points.
    assert_eq!(cs[5].seed, cs[32 + 5].seed);
    assert_ne!(cs[5].seed, cs[6].seed);
    // Same text, same seeds (a stable hash); another base seed, other seeds.
    let again = Space::parse(Path::new("s.toml"), text).unwrap();
    assert_eq!(again.configurations(), cs);
    let other = Space::parse(Path::new("s.toml"), &text.replace("seed = 11", "seed = 12")).unwrap();
    assert_ne!(other.configurations()[5].seed, cs[5].seed);
    assert_ne!(other.fingerprint("digits"), s.fingerprint("digits"));
    assert_ne!(s.fingerprint("iris"), s.fingerprint("digits"));
    // depth 2, momentum 0.9, adam, weight decay 1e-4, width 16.
    let c = cs
        .iter()
        .find(|c| {
            s.point_key(&c.values)
                == "depth=2,momentum=0.9,optimizer=adam,weight_decay=0.0001,width=16"
        })
        .unwrap();
    let (spec, _) = s.run_spec(c, "iris").unwrap();
    assert_eq!(spec.arch.to_string(), "mlp:4-16-16-3:tanh");
    assert_eq!(
        spec.training.optimizer,
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-4
        }
    );
    assert_eq!(spec.training.epochs, 3);
    assert_eq!(spec.data.subset, 0.5);
    assert_eq!(spec.seeds, terrain_model::run::Seeds::derive(c.seed));
    // SGD takes the momentum as momentum.
    let c = cs
        .iter()
        .find(|c| {
            s.point_key(&c.values)
                .contains("momentum=0.5,optimizer=sgd")
        })
        .unwrap();
    let (spec, _) = s.run_spec(c, "iris").unwrap();
    assert!(matches!(spec.training.optimizer, Optimizer::Sgd { momentum, .. } if momentum == 0.5));
}

#[test]
fn objectives_and_bad_combinations() {
    let text = r#"
arch = "mlp:4-8-3:relu"
[grid]
objective = ["erm", "flood:level=0.05", "sam:rho=0.05"]
lr = [0.1, -1.0]
"#;
    let s = Space::parse(Path::new("o.toml"), text).unwrap();
    let cs = s.configurations();
    let ok = s.run_spec(&cs[0], "iris").unwrap();
    assert!(ok.1.is_some());
    // lr = -1 is an invalid setting, named: the sweep records it as a failed configuration.
    let bad = cs
        .iter()
        .find(|c| c.values[0] == HpValue::Float(-1.0))
        .unwrap();
    let e = s.run_spec(bad, "iris").unwrap_err().to_string();
    assert!(e.contains("lr"), "{e}");
}

#[test]
fn shards_from_flags_and_schedulers() {
    let s: Shard = "2/5".parse().unwrap();
    assert_eq!((s.index, s.count), (2, 5));
    assert_eq!(s.to_string().parse::<Shard>().unwrap(), s);
    for bad in ["5/5", "1", "a/2", "0/0", "-1/3"] {
        assert!(bad.parse::<Shard>().is_err(), "{bad}");
    }
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let slurm = Shard::from_vars(
        env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]),
        None,
    );
    assert_eq!(slurm.unwrap(), Some(Shard { index: 3, count: 4 }));
    let from_one = Shard::from_vars(
        env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]),
        None,
    );
    assert_eq!(from_one.unwrap(), Some(Shard { index: 3, count: 4 }));
    let k8s = Shard::from_vars(env(&[("JOB_COMPLETION_INDEX", "1")]), Some(3));
    assert_eq!(k8s.unwrap(), Some(Shard { index: 1, count: 3 }));
    assert!(Shard::from_vars(env(&[("JOB_COMPLETION_INDEX", "1")]), None).is_err());
    assert!(Shard::from_vars(env(&[("JOB_COMPLETION_INDEX", "3")]), Some(3)).is_err());
    assert!(Shard::from_vars(env(&[("SLURM_ARRAY_TASK_ID", "x")]), Some(3)).is_err());
    assert_eq!(Shard::from_vars(env(&[]), None).unwrap(), None);
}
