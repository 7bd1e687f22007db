//! The MD tree's feature row of one configuration (Zhou et al. 2024, after Yang et al. 2021):
//! several trained seeds → train/test loss and error (seed means), `ln` of the seed means of the
//! Hessian's top eigenvalue and trace, mode connectivity between the first two seeds, and CKA
//! over ordered pairs. Field names are the columns of the MD tree's published data frames.

use serde::{Deserialize, Serialize};
use terrain_model::{Model, data::Dataset, loss::LossKind};

use crate::{
    Result,
    cka::{self, CkaConfig},
    connect::{self, ConnectConfig, Connectivity},
    sharpness::{self, Basics, BasicsConfig},
    surface::Evaluator,
};

/// Settings of [`feature_row`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// The loss.
    pub loss: LossKind,
    /// Loss, error, norms and Hessian settings.
    pub basics: BasicsConfig,
    /// Mode connectivity between the first two models.
    pub connect: ConnectConfig,
    /// CKA over ordered pairs.
    pub cka: CkaConfig,
}

impl FeatureConfig {
    /// The MD tree's settings for `loss`: Bezier curves, PyHessian on 200 rows, CKA on 768
    /// mixup rows.
    pub fn new(loss: LossKind) -> Self {
        FeatureConfig {
            loss,
            basics: BasicsConfig::default(),
            connect: ConnectConfig::new(connect::Method::Bezier, loss),
            cka: CkaConfig::default(),
        }
    }
}

/// One row of the MD tree's data frame (the columns this crate measures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRow {
    /// Training error in percent, mean over seeds.
    pub train_error: Option<f64>,
    /// Training loss, mean over seeds.
    pub train_loss: f64,
    /// Test error in percent, mean over seeds (when test data is given).
    pub test_error: Option<f64>,
    /// Test loss, mean over seeds (when test data is given).
    pub test_loss: Option<f64>,
    /// `ln` of the seed mean of the Hessian's top eigenvalue.
    pub hessian_e: f64,
    /// `ln` of the seed mean of the Hessian's trace.
    pub hessian_t: f64,
    /// Yang et al.'s `mc` between the first two seeds (needs two models).
    pub mode_connectivity: Option<f64>,
    /// `−max` interior training error along the path between the first two seeds.
    pub mode_connectivity_peak: Option<f64>,
    /// Mean linear CKA over ordered pairs of seeds (needs two models).
    #[serde(rename = "CKA")]
    pub cka: Option<f64>,
}

/// Everything behind a feature row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureReport {
    /// The row.
    pub row: FeatureRow,
    /// Per-model basics.
    pub models: Vec<Basics>,
    /// Per-model test loss and error (percent).
    pub test: Vec<(f64, Option<f64>)>,
    /// The path between the first two models.
    pub connectivity: Option<Connectivity>,
    /// CKA pairs.
    pub cka: Option<cka::CkaResult>,
}

fn mean(v: impl IntoIterator<Item = f64>) -> f64 {
    let (s, n) = v
        .into_iter()
        .fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n as f64
}

/// The feature row of `models` (seeds of one configuration; `names` name them in errors) on
/// `train` and, when given, `test`.
pub fn feature_row(
    models: &[&Model],
    names: &[String],
    train: &Dataset,
    test: Option<&Dataset>,
    config: &FeatureConfig,
) -> Result<FeatureReport> {
    if models.is_empty() {
        return Err(crate::Error::TooFewModels {
            what: "a feature row".into(),
            needed: 1,
            given: 0,
        });
    }
    for (k, m) in models.iter().enumerate().skip(1) {
        crate::direction::same_architecture("a feature row", models[0], m, &names[0], &names[k])?;
    }
    let basics = models
        .iter()
        .map(|m| sharpness::basics(m, train, config.loss, &config.basics))
        .collect::<Result<Vec<_>>>()?;
    let test_evals = match test {
        Some(t) => {
            let ev = Evaluator::new(models[0], t, config.loss, config.basics.batch_size)?;
            models
                .iter()
                .map(|m| ev.evaluate(m).map(|(l, e)| (l, e.map(|e| 100.0 * e))))
                .collect::<Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    let connectivity = if models.len() >= 2 {
        Some(connect::connect(
            models[0],
            models[1],
            train,
            &config.connect,
        )?)
    } else {
        None
    };
    let cka = if models.len() >= 2 {
        Some(cka::cka_models(models, names, train, &config.cka)?)
    } else {
        None
    };
    let opt_mean = |v: Vec<Option<f64>>| -> Option<f64> {
        v.into_iter().collect::<Option<Vec<f64>>>().map(mean)
    };
    let row = FeatureRow {
        train_error: opt_mean(basics.iter().map(|b| b.error).collect()),
        train_loss: mean(basics.iter().map(|b| b.loss)),
        test_error: if test_evals.is_empty() {
            None
        } else {
            opt_mean(test_evals.iter().map(|t| t.1).collect())
        },
        test_loss: (!test_evals.is_empty()).then(|| mean(test_evals.iter().map(|t| t.0))),
        hessian_e: mean(basics.iter().map(|b| b.hessian_top_eigenvalue)).ln(),
        hessian_t: mean(basics.iter().map(|b| b.hessian_trace)).ln(),
        mode_connectivity: connectivity.as_ref().map(|c| c.mc),
        mode_connectivity_peak: connectivity.as_ref().map(|c| c.mc_peak),
        cka: cka.as_ref().map(|c| c.cka),
    };
    Ok(FeatureReport {
        row,
        models: basics,
        test: test_evals,
        connectivity,
        cka,
    })
}
