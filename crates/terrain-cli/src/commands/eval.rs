//! `terrain eval`: loss and error of a checkpoint on a data set. On the data set it was trained on,
//! the held-out rows by default: the checkpoint records its recipe, so the split is reproduced.

use anyhow::{Result, bail};
use serde_json::json;
use terrain_model::{data::Dataset, loss};

use super::{CheckpointDataArgs, Context};

/// Which rows of the data set to evaluate on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Rows {
    /// The held-out rows when the data set is the one the checkpoint was trained on (its recipe
    /// reproduces the split), otherwise all rows.
    Auto,
    /// Every row of the data set.
    All,
    /// The rows the checkpoint was trained on (subset and label noise as in training).
    Train,
    /// The rows the checkpoint's training held out.
    Test,
}

/// Arguments of `terrain eval`.
#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    input: CheckpointDataArgs,
    /// Which rows: auto (held-out rows of the training data set, else all), all, train or test.
    #[arg(long, value_enum, default_value_t = Rows::Auto)]
    rows: Rows,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Seed (for synthetic data sets).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    seed: u64,
}

/// Runs `terrain eval`.
pub fn run(ctx: &Context, a: EvalArgs) -> Result<()> {
    let (ckpt, record) = a.input.load_checkpoint(&ctx.device)?;
    let trained_on_this = record.run.as_ref().filter(|r| {
        r.data.test_source.is_none()
            && terrain_model::data::same_source(&r.data.source, &a.input.data.data)
    });
    // The data are loaded once: as they are (standardised as recorded), or prepared by the
    // checkpoint's recipe when its split is asked for.
    let all_rows = |why: &str| -> Result<(Dataset, bool, String)> {
        let (data, standardized) = a.input.load_data(&record, a.seed)?;
        let n = data.len();
        Ok((data, standardized, format!("all {n} rows{why}")))
    };
    let (rows, standardized, which) = match (a.rows, trained_on_this) {
        (Rows::All, _) | (Rows::Auto, None) => all_rows("")?,
        (Rows::Auto | Rows::Test | Rows::Train, Some(r)) => {
            let prepared = r.prepare_data(a.input.data.data_dir.as_deref())?;
            let standardized = prepared.standardizer.is_some();
            if a.rows == Rows::Train {
                let n = prepared.train.len();
                (
                    prepared.train,
                    standardized,
                    format!("the {n} training rows"),
                )
            } else {
                match prepared.test {
                    Some(t) => {
                        let n = t.len();
                        let which = format!(
                            "the {n} held-out rows ({:.0}% of {}, split as in training)",
                            100.0 * r.data.holdout,
                            r.data.source
                        );
                        (t, standardized, which)
                    }
                    None if a.rows == Rows::Auto => all_rows(" (training held none out)")?,
                    None => bail!("the checkpoint's training held out no rows (holdout 0)"),
                }
            }
        }
        (Rows::Train | Rows::Test, None) => bail!(
            "--rows {} needs the checkpoint's training recipe for this data set; the checkpoint \
             was trained on other data or records no recipe (use --rows all)",
            if a.rows == Rows::Train {
                "train"
            } else {
                "test"
            }
        ),
    };
    let kind = a.input.loss_for(&rows);
    let e = loss::evaluate_with(&ckpt.model, &rows, a.batch_size, kind)?;
    terrain_report::table::print_value(
        ctx.format,
        &json!({
            "checkpoint": a.input.checkpoint.display().to_string(),
            "arch": ckpt.model.spec().to_string(),
            "data": a.input.data.data,
            "rows": which,
            "standardized": standardized,
            "loss_kind": kind,
            "loss": e.loss,
            "error": e.error,
            "accuracy": e.accuracy,
            "samples": e.samples,
        }),
    );
    Ok(())
}
