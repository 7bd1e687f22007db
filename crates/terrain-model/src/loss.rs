//! Losses (per sample, so robust objectives can reweight them) and evaluation of loss and error.

use candle_core::{D, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{
    Error, Model, Result,
    data::{Dataset, Targets, Task},
};

/// The loss function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Softmax cross-entropy on logits (hard or soft targets).
    Ce,
    /// Mean squared error, averaged over outputs.
    Mse,
}

impl LossKind {
    /// The natural loss for a task: cross-entropy for classification, MSE for regression.
    pub fn for_task(task: Task) -> Self {
        match task {
            Task::Classification { .. } => LossKind::Ce,
            Task::Regression { .. } => LossKind::Mse,
        }
    }
}

impl std::str::FromStr for LossKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ce" | "cross-entropy" => Ok(LossKind::Ce),
            "mse" => Ok(LossKind::Mse),
            _ => Err(Error::config("loss", s, "expected ce or mse")),
        }
    }
}

impl std::fmt::Display for LossKind {
    /// `ce` or `mse`, which parse back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LossKind::Ce => "ce",
            LossKind::Mse => "mse",
        })
    }
}

/// Per-sample losses `[N]` of `outputs` `[N, K]` against `targets`. Twice differentiable
/// (log-softmax is built from primitives, not candle's backward-less fused softmax).
pub fn per_sample(outputs: &Tensor, targets: &Targets, kind: LossKind) -> Result<Tensor> {
    let dtype = outputs.dtype();
    let dev = outputs.device();
    match (kind, targets) {
        (LossKind::Ce, Targets::Classes(y)) => {
            let logp = candle_nn::ops::log_softmax(outputs, D::Minus1)?;
            let y = y.to_device(dev)?.to_dtype(DType::U32)?.unsqueeze(1)?;
            Ok(logp.gather(&y, 1)?.squeeze(1)?.neg()?)
        }
        (LossKind::Ce, Targets::Soft(p)) => {
            let logp = candle_nn::ops::log_softmax(outputs, D::Minus1)?;
            let p = p.to_device(dev)?.to_dtype(dtype)?;
            Ok(logp.mul(&p)?.sum(1)?.neg()?)
        }
        (LossKind::Mse, Targets::Values(y)) | (LossKind::Mse, Targets::Soft(y)) => {
            let y = y.to_device(dev)?.to_dtype(dtype)?;
            Ok(outputs.sub(&y)?.sqr()?.mean(1)?)
        }
        (LossKind::Mse, Targets::Classes(y)) => {
            // Regression onto one-hot codes.
            let k = outputs.dim(1)?;
            let onehot = candle_nn::encoding::one_hot(
                y.to_device(dev)?.to_dtype(DType::U32)?,
                k,
                1f64,
                0f64,
            )?
            .to_dtype(dtype)?;
            Ok(outputs.sub(&onehot)?.sqr()?.mean(1)?)
        }
        (LossKind::Ce, Targets::Values(_)) => Err(Error::config(
            "loss",
            "ce",
            "cross-entropy needs class labels; this data set has real-valued targets (use mse)",
        )),
    }
}

/// Mean loss over a batch.
pub fn mean(outputs: &Tensor, targets: &Targets, kind: LossKind) -> Result<Tensor> {
    Ok(per_sample(outputs, targets, kind)?.mean_all()?)
}

/// Number of misclassified rows (classification targets only; `None` otherwise).
pub fn errors(outputs: &Tensor, targets: &Targets) -> Result<Option<usize>> {
    let pred = outputs.argmax(D::Minus1)?.to_dtype(DType::U32)?;
    let truth = match targets {
        Targets::Classes(y) => y.to_device(outputs.device())?.to_dtype(DType::U32)?,
        Targets::Soft(p) => p
            .to_device(outputs.device())?
            .argmax(D::Minus1)?
            .to_dtype(DType::U32)?,
        Targets::Values(_) => return Ok(None),
    };
    let wrong = pred
        .ne(&truth)?
        .to_dtype(DType::U32)?
        .sum_all()?
        .to_scalar::<u32>()?;
    Ok(Some(wrong as usize))
}

/// Loss and error of a model on a data set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Fraction misclassified (classification only; `None` for regression).
    pub error: Option<f64>,
    /// Accuracy = 1 − error (classification only).
    pub accuracy: Option<f64>,
    /// Rows evaluated.
    pub samples: usize,
}

/// Evaluates `model` (in eval mode) on `data` in batches of `batch_size`, with the task's loss.
pub fn evaluate(model: &Model, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    evaluate_with(model, data, batch_size, LossKind::for_task(data.task))
}

/// Evaluates with an explicit loss.
pub fn evaluate_with(
    model: &Model,
    data: &Dataset,
    batch_size: usize,
    kind: LossKind,
) -> Result<Evaluation> {
    check_fits(model, data)?;
    let mut loss_sum = 0.0;
    let mut wrong = 0usize;
    let classification = matches!(data.task, Task::Classification { .. });
    for batch in data.batches(batch_size, None, false)? {
        let batch = batch?;
        let out = model.forward_eval(&batch.x)?;
        let l = per_sample(&out, &batch.y, kind)?;
        loss_sum += l.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        wrong += errors(&out, &batch.y)?.unwrap_or(0);
    }
    let n = data.len();
    let loss = loss_sum / n as f64;
    if !loss.is_finite() {
        return Err(Error::Diverged {
            what: "evaluation loss".into(),
            value: loss,
            epoch: 0,
            step: 0,
        });
    }
    let error = classification.then(|| wrong as f64 / n as f64);
    Ok(Evaluation {
        loss,
        error,
        accuracy: error.map(|e| 1.0 - e),
        samples: n,
    })
}

/// [`evaluate_with`], also returning every row's loss (in row order), for loss-concentration
/// diagnostics.
pub fn evaluate_per_sample(
    model: &Model,
    data: &Dataset,
    batch_size: usize,
    kind: LossKind,
) -> Result<(Evaluation, Vec<f64>)> {
    check_fits(model, data)?;
    let mut losses = Vec::with_capacity(data.len());
    let mut wrong = 0usize;
    let classification = matches!(data.task, Task::Classification { .. });
    for batch in data.batches(batch_size, None, false)? {
        let batch = batch?;
        let out = model.forward_eval(&batch.x)?;
        let l = per_sample(&out, &batch.y, kind)?;
        losses.extend(l.to_dtype(DType::F64)?.to_vec1::<f64>()?);
        wrong += errors(&out, &batch.y)?.unwrap_or(0);
    }
    let n = data.len();
    let loss = losses.iter().sum::<f64>() / n as f64;
    if !loss.is_finite() {
        return Err(Error::Diverged {
            what: "evaluation loss".into(),
            value: loss,
            epoch: 0,
            step: 0,
        });
    }
    let error = classification.then(|| wrong as f64 / n as f64);
    let eval = Evaluation {
        loss,
        error,
        accuracy: error.map(|e| 1.0 - e),
        samples: n,
    };
    Ok((eval, losses))
}

/// Checks that a data set fits a model: input size and number of outputs.
pub fn check_fits(model: &Model, data: &Dataset) -> Result<()> {
    let spec = model.spec();
    let want: usize = spec.input_shape().iter().product();
    let got: usize = data.input_shape().iter().product();
    let mismatch = |reason: String| Error::DataModelMismatch {
        arch: spec.to_string(),
        data: data.input_shape(),
        reason,
    };
    if want != got {
        return Err(mismatch(format!(
            "the network takes {want} input values per sample, data set `{}` has {got}",
            data.name
        )));
    }
    if spec.output_dim() != data.output_dim() {
        return Err(mismatch(format!(
            "the network has {} outputs, data set `{}` needs {}",
            spec.output_dim(),
            data.name,
            data.output_dim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::LossKind;

    #[test]
    fn loss_names_round_trip() {
        for k in [LossKind::Ce, LossKind::Mse] {
            assert_eq!(k.to_string().parse::<LossKind>().unwrap(), k);
        }
        assert!(
            "hinge"
                .parse::<LossKind>()
                .unwrap_err()
                .to_string()
                .contains("hinge")
        );
    }
}
