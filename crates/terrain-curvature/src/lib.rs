//! # terrain-curvature
//!
//! The curvature engine of terrain: the Hessian of a model's loss over a data set as a matrix-free
//! operator ([`HessianOperator`]: exact Hessian-vector products, the gradient, Gauss–Newton
//! products and the exact diagonal by terrain-model's differentiation engine on the layer
//! description ([`terrain_model::engine`], Pearlmutter's R-operator), candle's double backward as
//! fallback and oracle, and a
//! finite-difference oracle), and what is computed from it: top eigenvalues (power iteration with
//! deflation, Lanczos), the trace (Hutchinson, Hutch++), the spectral density (stochastic Lanczos
//! quadrature), the diagonal (exact, Hutchinson, Becker–LeCun and curvature propagation), dense
//! Hessians of small models, and per-sample derivatives of the loss with respect to the inputs.
//!
//! Every estimate carries its uncertainty (standard error, residual, iterations). Everything random
//! takes a seed.
#![warn(missing_docs)]

pub mod dense;
pub mod density;
pub mod diagonal;
pub mod eigen;
pub mod error;
pub mod hessian;
pub mod input;
pub mod linalg;
pub mod memory;
pub mod operator;
pub mod propagation;
pub mod resume;
pub mod trace;
pub mod vector;

pub use dense::DenseHessian;
pub use density::{SlqConfig, SpectralDensity};
pub use diagonal::{
    DiagonalConfig, DiagonalEstimate, DiagonalMethod, DiagonalMoments, ParamDiagonal,
};
pub use eigen::{EigenPair, LanczosConfig, PowerConfig, TopEigen};
pub use error::{Error, Result};
pub use hessian::{
    Curvature, FiniteDifferenceOperator, FnHessian, HessianConfig, HessianOperator, HvpMethod,
    ParamFilter,
};
pub use linalg::SymmetricEigen;
pub use memory::MemoryEstimate;
pub use operator::{DenseOperator, LinearOperator, OperatorExt, Scaled, Shifted, Sum};
pub use propagation::{Coverage, CpVariant, CurvatureFactor};
pub use trace::{HutchPlusPlusConfig, HutchinsonConfig, TraceEstimate};
