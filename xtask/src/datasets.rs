//! `cargo xtask datasets ...`: list the supported Hugging Face Hub image datasets and fetch them
//! into terrain's data directory, where `terrain_model::data::load("mnist")` finds them.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use terrain_model::data::{self, hub};
use terrain_report::{Cell, Table};

/// Arguments of `cargo xtask datasets`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: DatasetsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DatasetsCommand {
    /// List the supported datasets: Hub repository, image shape, classes, and which splits are
    /// already fetched into the data directory.
    List {
        /// The data directory (default: $TERRAIN_DATA_DIR, else $XDG_CACHE_HOME/terrain/datasets,
        /// else ~/.cache/terrain/datasets).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Fetch datasets from the Hugging Face Hub (through its cache: $HF_HUB_CACHE, else
    /// $HF_HOME/hub, else ~/.cache/huggingface/hub) and write `{NAME}-{train,test}.safetensors`
    /// into the data directory. Splits already written are skipped.
    Fetch {
        /// Datasets to fetch: mnist, fashion-mnist, cifar10, or `all`.
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// The data directory (default: $TERRAIN_DATA_DIR, else $XDG_CACHE_HOME/terrain/datasets,
        /// else ~/.cache/terrain/datasets).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Use only the Hugging Face cache, never the network (also on with HF_HUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
    },
}

/// Runs `cargo xtask datasets ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DatasetsCommand::List { data_dir } => {
            let dir = data_dir.unwrap_or_else(data::data_dir);
            print!("{}", list(&dir, &hub::HubOptions::from_env().cache_dir));
            Ok(())
        }
        DatasetsCommand::Fetch {
            names,
            data_dir,
            offline,
        } => {
            let dir = data_dir.unwrap_or_else(data::data_dir);
            let mut opts = hub::HubOptions::from_env();
            opts.offline |= offline;
            fetch(&names, &dir, &opts)
        }
    }
}

/// The `list` table: one line per dataset, then where things are looked for.
fn list(data_dir: &Path, cache_dir: &Path) -> String {
    let mut table = Table::new(["name", "hub repo", "shape", "classes", "train", "test"]);
    for spec in hub::DATASETS {
        let [c, h, w] = spec.shape;
        let mut row: Vec<Cell> = vec![
            spec.name.into(),
            spec.repo.into(),
            format!("{c}x{h}x{w}").into(),
            spec.classes.into(),
        ];
        row.extend(
            hub::SPLITS
                .iter()
                .map(|split| Cell::from(split_status(spec, split, data_dir, cache_dir))),
        );
        table.push(row).expect("six cells for six columns");
    }
    let mut out = table.to_terminal();
    out += &format!("\ndata dir:  {}\n", data_dir.display());
    out += &format!("hf cache:  {}\n", cache_dir.display());
    out
}

fn split_status(spec: &hub::HubDataset, split: &str, data_dir: &Path, cache_dir: &Path) -> String {
    match hub::fetched_rows(spec, &spec.output_path(data_dir, split)) {
        Ok(Some(rows)) => format!("fetched ({rows} rows)"),
        Ok(None) => match hub::cached_file(spec, split, cache_dir) {
            Ok(Some(_)) => "not fetched (in cache)".to_string(),
            _ => "not fetched".to_string(),
        },
        Err(_) => "invalid file".to_string(),
    }
}

/// The dataset names `names` stands for (`all` = every supported one), validated, deduplicated,
/// in the order given.
fn expand_names(names: &[String]) -> anyhow::Result<Vec<&'static hub::HubDataset>> {
    let mut out: Vec<&'static hub::HubDataset> = Vec::new();
    for name in names {
        let specs: Vec<&'static hub::HubDataset> = if name.trim().eq_ignore_ascii_case("all") {
            hub::DATASETS.iter().collect()
        } else {
            vec![hub::spec(name)?]
        };
        for s in specs {
            if !out.iter().any(|o| o.name == s.name) {
                out.push(s);
            }
        }
    }
    Ok(out)
}

/// Fetches every dataset in `names`, going on after a failure; fails at the end if any did.
fn fetch(names: &[String], data_dir: &Path, opts: &hub::HubOptions) -> anyhow::Result<()> {
    let specs = expand_names(names)?;
    tracing::info!(
        data_dir = %data_dir.display(),
        cache = %opts.cache_dir.display(),
        offline = opts.offline,
        "fetching {}",
        specs.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
    );
    let mut failed = Vec::new();
    for spec in specs {
        match hub::fetch_with(spec.name, data_dir, opts)
            .with_context(|| format!("fetching `{}`", spec.name))
        {
            Ok(paths) => {
                for p in paths {
                    println!("{}", p.display());
                }
            }
            Err(e) => {
                tracing::error!("{e:#}");
                failed.push(spec.name);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not fetch: {} (see the errors above)",
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expand() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let names = |v: &[&str]| {
            expand_names(&s(v))
                .unwrap()
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&["all"]), ["mnist", "fashion-mnist", "cifar10"]);
        assert_eq!(
            names(&["cifar10", "ALL"]),
            ["cifar10", "mnist", "fashion-mnist"]
        );
        assert_eq!(
            names(&["Fashion_MNIST", "fashion-mnist"]),
            ["fashion-mnist"]
        );
        let e = expand_names(&s(&["mnist", "svhn"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("svhn") && e.contains("known"), "{e}");
    }

    #[test]
    fn list_shows_every_dataset() {
        let dir = tempfile::tempdir().unwrap();
        let table = list(dir.path(), &dir.path().join("hub"));
        for part in [
            "mnist",
            "ylecun/mnist",
            "zalando-datasets/fashion_mnist",
            "uoft-cs/cifar10",
            "1x28x28",
            "3x32x32",
        ] {
            assert!(table.contains(part), "`{part}` missing from:\n{table}");
        }
        assert_eq!(table.matches("not fetched").count(), 6, "{table}");
    }
}
