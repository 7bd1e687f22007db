//! Serialisable architecture specs. A spec fully describes a network: it is stored in the
//! `__metadata__` of terrain's safetensors checkpoints so they describe themselves, and it lists
//! every tensor (name, shape, role, initialisation) without allocating any.
//!
//! Compact command-line forms:
//! - `mlp:IN-H1-...-OUT:ACT[:bn][:nobias]`, e.g. `mlp:64-32-16-10:tanh`. `bn` puts a BatchNorm1d
//!   after each hidden Linear; `nobias` drops the Linear biases (the Ishida MLP of the SoftAD paper
//!   is `mlp:2-500-500-500-500-2:relu:bn:nobias`). Parameter names follow PyTorch's `nn.Sequential`
//!   (`0.weight`, `0.bias`, `2.weight`, ...), so plain PyTorch state dicts load as they are.
//! - `cnn:CxHxW-C1-C2-...-OUT:ACT`, e.g. `cnn:1x8x8-16-32-10:relu`: per stage a 3×3 convolution
//!   (padding 1), the activation and a 2×2 max pool; then a Linear to OUT.
//! - `resnet18:CxHxW:wK:OUT[:bn=M][:act=ACT]`, e.g. `resnet18:3x32x32:w16:10`: the ResNet-18 of
//!   the loss-landscape taxonomy and MD-tree papers (basic blocks, BatchNorm, widths K, 2K, 4K, 8K,
//!   global average pooling). Parameter names follow that code (`conv1.weight`,
//!   `layer1.0.bn1.weight`, ...). Its activation is ReLU, the papers', unless `act=` names another
//!   (smooth ResNets for tests of curvature terms that ReLU has not).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{
    Error, Result,
    layers::{BatchNorm, Conv2d, Linear},
    network::{Layer, Network, Residual},
};

/// BatchNorm's variance guard ε (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

/// BatchNorm's running-statistics momentum unless a spec says otherwise (PyTorch's default).
pub const DEFAULT_BN_MOMENTUM: f64 = 0.1;

fn default_bn_momentum() -> f64 {
    DEFAULT_BN_MOMENTUM
}

fn default_resnet_activation() -> Activation {
    Activation::Relu
}

/// Elementwise activation functions; all twice (and three times) differentiable through candle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(x, 0); its second derivative is 0 almost everywhere.
    Relu,
    /// tanh(x).
    Tanh,
    /// The exact (erf) GELU of PyTorch's `nn.GELU()`, built from `erf` so all derivatives are exact.
    Gelu,
    /// x·sigmoid(x).
    Silu,
    /// 1 / (1 + e^(−x)).
    Sigmoid,
    /// log(1 + eˣ), in the overflow-free form max(x,0) + log(1 + e^(−|x|)).
    Softplus,
}

impl Activation {
    /// All activations, in the order they are documented.
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::Tanh,
        Activation::Gelu,
        Activation::Silu,
        Activation::Sigmoid,
        Activation::Softplus,
    ];

    /// The lowercase name used in compact specs.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Gelu => "gelu",
            Activation::Silu => "silu",
            Activation::Sigmoid => "sigmoid",
            Activation::Softplus => "softplus",
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Activation::ALL
            .into_iter()
            .find(|a| a.name() == s.to_ascii_lowercase())
            .ok_or_else(|| Error::Spec {
                spec: s.to_string(),
                reason:
                    "unknown activation; expected one of relu, tanh, gelu, silu, sigmoid, softplus"
                        .into(),
            })
    }
}

/// A multilayer perceptron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpSpec {
    /// Input features (inputs of any shape are flattened).
    pub input: usize,
    /// Hidden layer widths (may be empty: a linear model).
    pub hidden: Vec<usize>,
    /// Outputs (classes or regression targets).
    pub output: usize,
    /// Activation after every hidden layer.
    pub activation: Activation,
    /// Whether the Linear layers have biases.
    #[serde(default = "yes")]
    pub bias: bool,
    /// Whether a BatchNorm1d follows every hidden Linear (before the activation).
    #[serde(default)]
    pub batch_norm: bool,
    /// Running-statistics momentum of the BatchNorm layers (compact form `bn=M`; default 0.1).
    #[serde(default = "default_bn_momentum")]
    pub bn_momentum: f64,
}

fn yes() -> bool {
    true
}

/// A small convolutional network: 3×3 conv (padding 1) → activation → 2×2 max pool per stage,
/// then one Linear layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CnnSpec {
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Output channels of each convolution stage.
    pub channels: Vec<usize>,
    /// Outputs (classes).
    pub output: usize,
    /// Activation after every convolution.
    pub activation: Activation,
}

/// ResNet-18 with a width multiplier, as in the loss-landscape taxonomy / MD-tree code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResNetSpec {
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Width multiplier K: stage widths are K, 2K, 4K, 8K.
    pub width: usize,
    /// Outputs (classes).
    pub output: usize,
    /// Running-statistics momentum of every BatchNorm layer (compact form `:bn=M`; default 0.1).
    #[serde(default = "default_bn_momentum")]
    pub bn_momentum: f64,
    /// The activation of every block and the stem (compact form `:act=ACT`; default ReLU).
    #[serde(default = "default_resnet_activation")]
    pub activation: Activation,
}

/// A network architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ArchSpec {
    /// Multilayer perceptron.
    Mlp(MlpSpec),
    /// Small CNN.
    Cnn(CnnSpec),
    /// ResNet-18 with width multiplier.
    #[serde(rename = "resnet18")]
    ResNet18(ResNetSpec),
}

/// Whether a tensor is trained (a parameter) or carried along (BatchNorm running statistics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A trainable parameter.
    Parameter,
    /// A non-trainable buffer.
    Buffer,
}

/// How a tensor is initialised (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform on `[-bound, bound]` (PyTorch's Linear/Conv default: bound = 1/√fan_in).
    Uniform {
        /// Half-width of the interval.
        bound: f64,
    },
    /// All ones.
    Ones,
    /// All zeros.
    Zeros,
}

/// One tensor of a network: its name, shape, role and initialisation.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSlot {
    /// Name, as in checkpoints (`0.weight`, `layer1.0.bn1.running_mean`).
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Parameter or buffer.
    pub role: Role,
    /// Initialisation.
    pub init: Init,
}

impl TensorSlot {
    /// Number of elements (saturating at `usize::MAX`).
    pub fn numel(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
    }
}

fn spec_err(spec: &str, reason: impl Into<String>) -> Error {
    Error::Spec {
        spec: spec.to_string(),
        reason: reason.into(),
    }
}

fn parse_dims(spec: &str, s: &str, sep: char, what: &str) -> Result<Vec<usize>> {
    s.split(sep)
        .map(|d| match d.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(spec_err(
                spec,
                format!("`{d}` in {what} is not a positive integer"),
            )),
        })
        .collect()
}

fn parse_momentum(spec: &str, m: &str) -> Result<f64> {
    match m.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(spec_err(
            spec,
            format!("BatchNorm momentum `{m}` must be a number in (0, 1]"),
        )),
    }
}

fn check_momentum(spec: &str, m: f64) -> Result<()> {
    // Written so that NaN fails too.
    if m > 0.0 && m <= 1.0 {
        Ok(())
    } else {
        Err(spec_err(
            spec,
            format!("BatchNorm momentum {m} must be in (0, 1]"),
        ))
    }
}

fn parse_chw(spec: &str, s: &str) -> Result<[usize; 3]> {
    let d = parse_dims(spec, s, 'x', "the input shape")?;
    <[usize; 3]>::try_from(d)
        .map_err(|_| spec_err(spec, format!("input shape `{s}` must be CxHxW")))
}

impl FromStr for ArchSpec {
    type Err = Error;

    /// Parses a compact spec (see the module docs) or a JSON spec.
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.starts_with('{') {
            let spec: ArchSpec =
                serde_json::from_str(s).map_err(|e| spec_err(s, format!("bad JSON: {e}")))?;
            spec.validate()?;
            return Ok(spec);
        }
        let parts: Vec<&str> = s.split(':').collect();
        let spec = match parts[0].to_ascii_lowercase().as_str() {
            "mlp" => {
                if parts.len() < 3 {
                    return Err(spec_err(s, "expected mlp:IN-H1-...-OUT:ACT[:bn][:nobias]"));
                }
                let dims = parse_dims(s, parts[1], '-', "the layer widths")?;
                if dims.len() < 2 {
                    return Err(spec_err(
                        s,
                        "an MLP needs at least an input and an output width",
                    ));
                }
                let activation = parts[2]
                    .parse()
                    .map_err(|e: Error| spec_err(s, e.to_string()))?;
                let (mut bias, mut batch_norm) = (true, false);
                let mut bn_momentum = DEFAULT_BN_MOMENTUM;
                for flag in &parts[3..] {
                    match *flag {
                        "bn" => batch_norm = true,
                        "nobias" => bias = false,
                        other if other.starts_with("bn=") => {
                            batch_norm = true;
                            bn_momentum = parse_momentum(s, &other[3..])?;
                        }
                        other => {
                            return Err(spec_err(
                                s,
                                format!(
                                    "unknown MLP option `{other}` (expected bn, bn=MOMENTUM or nobias)"
                                ),
                            ));
                        }
                    }
                }
                ArchSpec::Mlp(MlpSpec {
                    input: dims[0],
                    hidden: dims[1..dims.len() - 1].to_vec(),
                    output: dims[dims.len() - 1],
                    activation,
                    bias,
                    batch_norm,
                    bn_momentum,
                })
            }
            "cnn" => {
                if parts.len() != 3 {
                    return Err(spec_err(s, "expected cnn:CxHxW-C1-...-OUT:ACT"));
                }
                let (shape, rest) = parts[1]
                    .split_once('-')
                    .ok_or_else(|| spec_err(s, "expected cnn:CxHxW-C1-...-OUT:ACT"))?;
                let input = parse_chw(s, shape)?;
                let dims = parse_dims(s, rest, '-', "the channel list")?;
                if dims.len() < 2 {
                    return Err(spec_err(
                        s,
                        "a CNN needs at least one conv stage and an output",
                    ));
                }
                let activation = parts[2]
                    .parse()
                    .map_err(|e: Error| spec_err(s, e.to_string()))?;
                ArchSpec::Cnn(CnnSpec {
                    input,
                    channels: dims[..dims.len() - 1].to_vec(),
                    output: dims[dims.len() - 1],
                    activation,
                })
            }
            "resnet18" => {
                if !(4..=6).contains(&parts.len()) {
                    return Err(spec_err(
                        s,
                        "expected resnet18:CxHxW:wK:OUT[:bn=MOMENTUM][:act=ACTIVATION]",
                    ));
                }
                let mut bn_momentum = DEFAULT_BN_MOMENTUM;
                let mut activation = Activation::Relu;
                for opt in &parts[4..] {
                    if let Some(m) = opt.strip_prefix("bn=") {
                        bn_momentum = parse_momentum(s, m)?;
                    } else if let Some(a) = opt.strip_prefix("act=") {
                        activation = a.parse().map_err(|e: Error| spec_err(s, e.to_string()))?;
                    } else {
                        return Err(spec_err(
                            s,
                            format!(
                                "unknown ResNet option `{opt}` (expected bn=MOMENTUM or act=ACTIVATION)"
                            ),
                        ));
                    }
                }
                let input = parse_chw(s, parts[1])?;
                let width = parts[2]
                    .strip_prefix('w')
                    .and_then(|w| w.parse::<usize>().ok())
                    .filter(|&w| w > 0)
                    .ok_or_else(|| {
                        spec_err(s, format!("width `{}` must be wK, K > 0", parts[2]))
                    })?;
                let output = parse_dims(s, parts[3], '-', "the output size")?;
                if output.len() != 1 {
                    return Err(spec_err(s, "the output size must be one number"));
                }
                ArchSpec::ResNet18(ResNetSpec {
                    input,
                    width,
                    output: output[0],
                    bn_momentum,
                    activation,
                })
            }
            other => {
                return Err(spec_err(
                    s,
                    format!("unknown architecture `{other}` (expected mlp, cnn or resnet18)"),
                ));
            }
        };
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for ArchSpec {
    /// The compact form, which parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArchSpec::Mlp(m) => {
                write!(f, "mlp:{}", m.input)?;
                for h in &m.hidden {
                    write!(f, "-{h}")?;
                }
                write!(f, "-{}:{}", m.output, m.activation.name())?;
                if m.batch_norm && m.bn_momentum != DEFAULT_BN_MOMENTUM {
                    write!(f, ":bn={}", m.bn_momentum)?;
                } else if m.batch_norm {
                    write!(f, ":bn")?;
                }
                if !m.bias {
                    write!(f, ":nobias")?;
                }
                Ok(())
            }
            ArchSpec::Cnn(c) => {
                write!(f, "cnn:{}x{}x{}", c.input[0], c.input[1], c.input[2])?;
                for ch in &c.channels {
                    write!(f, "-{ch}")?;
                }
                write!(f, "-{}:{}", c.output, c.activation.name())
            }
            ArchSpec::ResNet18(r) => {
                write!(
                    f,
                    "resnet18:{}x{}x{}:w{}:{}",
                    r.input[0], r.input[1], r.input[2], r.width, r.output
                )?;
                if r.bn_momentum != DEFAULT_BN_MOMENTUM {
                    write!(f, ":bn={}", r.bn_momentum)?;
                }
                if r.activation != Activation::Relu {
                    write!(f, ":act={}", r.activation.name())?;
                }
                Ok(())
            }
        }
    }
}

/// `(conv output channels, stride)` of each basic block of ResNet-18 at width `k`.
pub(crate) fn resnet18_blocks(k: usize) -> Vec<(usize, usize, usize)> {
    // (stage index 1..=4, planes, stride) for the two blocks of each stage.
    let mut out = Vec::new();
    let w = |m: usize| k.saturating_mul(m);
    for (stage, (planes, stride)) in [(k, 1), (w(2), 2), (w(4), 2), (w(8), 2)]
        .into_iter()
        .enumerate()
    {
        out.push((stage + 1, planes, stride));
        out.push((stage + 1, planes, 1));
    }
    out
}

impl ArchSpec {
    /// Checks internal consistency (non-zero sizes, spatial sizes divisible by the pooling).
    pub fn validate(&self) -> Result<()> {
        let s = self.to_string();
        let nonzero = |v: &[usize], what: &str| {
            if v.contains(&0) {
                Err(spec_err(&s, format!("{what} must be positive")))
            } else {
                Ok(())
            }
        };
        match self {
            ArchSpec::Mlp(m) => {
                nonzero(&[m.input, m.output], "input and output widths")?;
                check_momentum(&s, m.bn_momentum)?;
                nonzero(&m.hidden, "hidden widths")
            }
            ArchSpec::Cnn(c) => {
                nonzero(&c.input, "the input shape")?;
                nonzero(&c.channels, "channels")?;
                nonzero(&[c.output], "the output size")?;
                let (mut h, mut w) = (c.input[1], c.input[2]);
                for (i, _) in c.channels.iter().enumerate() {
                    if h % 2 != 0 || w % 2 != 0 || h < 2 || w < 2 {
                        return Err(spec_err(
                            &s,
                            format!(
                                "stage {} gets a {h}x{w} map, which the 2x2 max pool cannot halve; \
                                 use fewer stages or an input divisible by 2^{}",
                                i + 1,
                                c.channels.len()
                            ),
                        ));
                    }
                    h /= 2;
                    w /= 2;
                }
                Ok(())
            }
            ArchSpec::ResNet18(r) => {
                nonzero(&r.input, "the input shape")?;
                nonzero(&[r.width, r.output], "width and output")?;
                check_momentum(&s, r.bn_momentum)?;
                if r.input[1] < 8 || r.input[2] < 8 {
                    return Err(spec_err(&s, "ResNet-18 needs inputs of at least 8x8"));
                }
                Ok(())
            }
        }?;
        self.element_count()
            .map(|_| ())
            .ok_or_else(|| spec_err(&s, "has more tensor elements than this machine can address"))
    }

    /// The number of scalars of every tensor (parameters and buffers), `None` when it overflows
    /// (absurd widths). Computed without allocating.
    pub fn element_count(&self) -> Option<usize> {
        self.network()
            .tensors()
            .into_iter()
            .try_fold(0usize, |acc, slot| {
                let n = slot
                    .shape
                    .iter()
                    .try_fold(1usize, |a, &d| a.checked_mul(d))?;
                acc.checked_add(n)
            })
    }

    /// The per-sample input shape the network expects (`[IN]` for an MLP, `[C,H,W]` otherwise).
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            ArchSpec::Mlp(m) => vec![m.input],
            ArchSpec::Cnn(c) => c.input.to_vec(),
            ArchSpec::ResNet18(r) => r.input.to_vec(),
        }
    }

    /// Number of outputs (logits or regression targets).
    pub fn output_dim(&self) -> usize {
        match self {
            ArchSpec::Mlp(m) => m.output,
            ArchSpec::Cnn(c) => c.output,
            ArchSpec::ResNet18(r) => r.output,
        }
    }

    /// Whether the network has BatchNorm layers (and so a train/eval distinction).
    pub fn has_batch_norm(&self) -> bool {
        match self {
            ArchSpec::Mlp(m) => m.batch_norm,
            ArchSpec::Cnn(_) => false,
            ArchSpec::ResNet18(_) => true,
        }
    }

    /// The network's layers with every tensor declared (name, shape, role, initialisation):
    /// the one description that the forward pass, the curvature sweeps and per-layer probes
    /// interpret (see [`crate::network`]).
    pub fn network(&self) -> Network<TensorSlot> {
        let param = |name: String, shape: Vec<usize>, init: Init| TensorSlot {
            name,
            shape,
            role: Role::Parameter,
            init,
        };
        let linear = |prefix: &str, i: usize, o: usize, bias: bool| {
            let bound = 1.0 / (i.max(1) as f64).sqrt();
            Layer::Linear(Linear {
                weight: param(
                    format!("{prefix}weight"),
                    vec![o, i],
                    Init::Uniform { bound },
                ),
                bias: bias
                    .then(|| param(format!("{prefix}bias"), vec![o], Init::Uniform { bound })),
            })
        };
        // PyTorch's Conv2d default: weight and bias uniform with bound 1/√(in·k²).
        let conv = |prefix: &str, i: usize, o: usize, k: usize, bias: bool, padding, stride| {
            let bound = 1.0 / (i.saturating_mul(k * k).max(1) as f64).sqrt();
            Layer::Conv2d(Conv2d {
                weight: param(
                    format!("{prefix}weight"),
                    vec![o, i, k, k],
                    Init::Uniform { bound },
                ),
                bias: bias
                    .then(|| param(format!("{prefix}bias"), vec![o], Init::Uniform { bound })),
                padding,
                stride,
            })
        };
        let batch_norm = |prefix: &str, c: usize, momentum: f64| {
            let buffer = |n: &str, init| TensorSlot {
                name: format!("{prefix}{n}"),
                shape: vec![c],
                role: Role::Buffer,
                init,
            };
            Layer::BatchNorm(BatchNorm {
                weight: param(format!("{prefix}weight"), vec![c], Init::Ones),
                bias: param(format!("{prefix}bias"), vec![c], Init::Zeros),
                running_mean: buffer("running_mean", Init::Zeros),
                running_var: buffer("running_var", Init::Ones),
                eps: BN_EPS,
                momentum,
            })
        };
        let mut layers = Vec::new();
        match self {
            ArchSpec::Mlp(m) => {
                // Names are nn.Sequential indices: every module (activations too) takes one.
                let mut idx = 0;
                let mut fan_in = m.input;
                for &h in &m.hidden {
                    layers.push(linear(&format!("{idx}."), fan_in, h, m.bias));
                    idx += 1;
                    if m.batch_norm {
                        layers.push(batch_norm(&format!("{idx}."), h, m.bn_momentum));
                        idx += 1;
                    }
                    layers.push(Layer::Activation(m.activation));
                    idx += 1;
                    fan_in = h;
                }
                layers.push(linear(&format!("{idx}."), fan_in, m.output, m.bias));
            }
            ArchSpec::Cnn(c) => {
                let mut in_c = c.input[0];
                for (i, &ch) in c.channels.iter().enumerate() {
                    layers.push(conv(&format!("conv{i}."), in_c, ch, 3, true, 1, 1));
                    layers.push(Layer::Activation(c.activation));
                    layers.push(Layer::MaxPool2x2);
                    in_c = ch;
                }
                let halve = |d: usize| d.checked_shr(c.channels.len() as u32).unwrap_or(0);
                let hw = halve(c.input[1]).saturating_mul(halve(c.input[2]));
                layers.push(Layer::Flatten);
                layers.push(linear("fc.", in_c.saturating_mul(hw), c.output, true));
            }
            ArchSpec::ResNet18(r) => {
                let (k, bnm) = (r.width, r.bn_momentum);
                layers.push(conv("conv1.", r.input[0], k, 3, false, 1, 1));
                layers.push(batch_norm("bn1.", k, bnm));
                layers.push(Layer::Activation(r.activation));
                let mut in_planes = k;
                for (i, (stage, planes, stride)) in resnet18_blocks(k).into_iter().enumerate() {
                    let p = format!("layer{stage}.{}.", i % 2);
                    let main = vec![
                        conv(
                            &format!("{p}conv1."),
                            in_planes,
                            planes,
                            3,
                            false,
                            1,
                            stride,
                        ),
                        batch_norm(&format!("{p}bn1."), planes, bnm),
                        Layer::Activation(r.activation),
                        conv(&format!("{p}conv2."), planes, planes, 3, false, 1, 1),
                        batch_norm(&format!("{p}bn2."), planes, bnm),
                    ];
                    let shortcut = if stride != 1 || in_planes != planes {
                        vec![
                            conv(
                                &format!("{p}shortcut.0."),
                                in_planes,
                                planes,
                                1,
                                false,
                                0,
                                stride,
                            ),
                            batch_norm(&format!("{p}shortcut.1."), planes, bnm),
                        ]
                    } else {
                        Vec::new()
                    };
                    layers.push(Layer::Residual(Residual { main, shortcut }));
                    layers.push(Layer::Activation(r.activation));
                    in_planes = planes;
                }
                layers.push(Layer::GlobalAvgPool);
                layers.push(linear("linear.", k.saturating_mul(8), r.output, true));
            }
        }
        Network { layers }
    }

    /// Every tensor of the network in a fixed order (the order of parameter vectors), as
    /// declared by [`ArchSpec::network`].
    pub fn tensor_slots(&self) -> Vec<TensorSlot> {
        self.network().slots()
    }

    /// Number of trainable parameters (saturating at `usize::MAX` for specs that
    /// [`ArchSpec::validate`] rejects).
    pub fn param_count(&self) -> usize {
        self.tensor_slots()
            .iter()
            .filter(|s| s.role == Role::Parameter)
            .fold(0usize, |a, s| a.saturating_add(s.numel()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_round_trip() {
        for s in [
            "mlp:64-32-16-10:tanh",
            "mlp:2-500-500-500-500-2:relu:bn:nobias",
            "mlp:13-1:relu",
            "cnn:1x8x8-16-32-10:relu",
            "resnet18:3x32x32:w16:10",
            "resnet18:3x32x32:w4:10:bn=0.01",
            "resnet18:3x8x8:w2:4:act=tanh",
            "resnet18:3x8x8:w2:4:bn=0.01:act=gelu",
            "mlp:4-8-3:relu:bn=0.3:nobias",
        ] {
            let spec: ArchSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s);
            let json = serde_json::to_string(&spec).unwrap();
            assert_eq!(json.parse::<ArchSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn mlp_names_follow_pytorch_sequential() {
        let spec: ArchSpec = "mlp:4-8-8-3:relu".parse().unwrap();
        let names: Vec<_> = spec.tensor_slots().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"
            ]
        );
        let bn: ArchSpec = "mlp:4-8-3:relu:bn:nobias".parse().unwrap();
        let names: Vec<_> = bn.tensor_slots().into_iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                "0.weight",
                "1.weight",
                "1.bias",
                "1.running_mean",
                "1.running_var",
                "3.weight"
            ]
        );
        assert_eq!(spec.param_count(), 4 * 8 + 8 + 8 * 8 + 8 + 8 * 3 + 3);
    }

    #[test]
    fn resnet18_parameter_counts_match_the_md_tree_paper() {
        // Published counts of the taxonomy/MD-tree ResNet-18 on CIFAR-10 for each width
        // (methods.md §2.2).
        let published = [
            (2, 11_420),
            (3, 25_297),
            (4, 44_622),
            (6, 99_616),
            (8, 176_402),
            (11, 332_441),
            (16, 701_466),
            (23, 1_446_917),
            (32, 2_797_610),
            (45, 5_527_675),
            (64, 11_173_962),
            (91, 22_580_841),
            (128, 44_662_922),
        ];
        for (k, count) in published {
            let spec: ArchSpec = format!("resnet18:3x32x32:w{k}:10").parse().unwrap();
            assert_eq!(spec.param_count(), count, "width {k}");
        }
    }

    #[test]
    fn malformed_specs_name_the_problem() {
        for (s, needle) in [
            ("mlp:64-x-10:tanh", "`x`"),
            ("mlp:64-10:swish", "swish"),
            ("mlp:64:relu", "at least"),
            ("mlp:64-0-10:relu", "`0`"),
            ("mlp:64-10:relu:dropout", "dropout"),
            ("transformer:12", "transformer"),
            ("cnn:1x7x7-8-10:relu", "7x7"),
            ("resnet18:3x32x32:16:10", "wK"),
            ("{\"kind\":\"mlp\"}", "JSON"),
            ("mlp:4-8-3:relu:bn=0", "momentum"),
            ("mlp:4-8-3:relu:bn=nan", "momentum"),
            ("resnet18:3x32x32:w4:10:bn=2", "momentum"),
            ("resnet18:3x32x32:w4:10:dropout", "dropout"),
        ] {
            let e = s.parse::<ArchSpec>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
            assert!(e.contains(s) || s.starts_with('{'), "{s}: {e}");
        }
    }
}
