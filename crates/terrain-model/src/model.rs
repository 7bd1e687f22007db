//! [`Model`]: an architecture spec with its tensors as candle `Var`s and a forward pass.

use std::collections::HashMap;

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use rand::Rng as _;

use crate::{
    ArchSpec, Error, Result,
    layers::{self, BatchNorm, Conv2d, Linear},
    rng,
    spec::{Init, Role, TensorSlot},
};

/// A named tensor of a model.
#[derive(Debug, Clone)]
pub struct NamedVar {
    /// Name, as in checkpoints.
    pub name: String,
    /// The variable (clones share storage with the model).
    pub var: Var,
}

/// One stage of an MLP.
#[derive(Debug, Clone)]
pub enum MlpLayer {
    /// A Linear layer.
    Linear(Linear),
    /// A BatchNorm1d layer.
    BatchNorm(BatchNorm),
    /// An activation.
    Activation(crate::Activation),
}

/// One basic block of a ResNet.
#[derive(Debug, Clone)]
pub struct BasicBlock {
    /// First 3×3 convolution (carries the stride).
    pub conv1: Conv2d,
    /// Its BatchNorm.
    pub bn1: BatchNorm,
    /// Second 3×3 convolution.
    pub conv2: Conv2d,
    /// Its BatchNorm.
    pub bn2: BatchNorm,
    /// 1×1 convolution + BatchNorm on the skip path when the shape changes.
    pub shortcut: Option<(Conv2d, BatchNorm)>,
}

/// The layers of a model, by architecture. Public so that curvature code can walk them.
#[derive(Debug, Clone)]
pub enum Network {
    /// MLP: its layers in `nn.Sequential` order.
    Mlp(Vec<MlpLayer>),
    /// CNN: conv stages (each conv → activation → 2×2 max pool) and the final Linear.
    Cnn {
        /// Convolutions.
        convs: Vec<Conv2d>,
        /// Activation after each convolution.
        activation: crate::Activation,
        /// Output layer.
        fc: Linear,
    },
    /// ResNet-18: stem, eight basic blocks, global average pooling, Linear.
    ResNet {
        /// Stem convolution.
        conv1: Conv2d,
        /// Stem BatchNorm.
        bn1: BatchNorm,
        /// The basic blocks in order.
        blocks: Vec<BasicBlock>,
        /// Output layer.
        linear: Linear,
    },
}

/// A network: its spec, dtype, device, named tensors and layers.
///
/// Parameters are trainable [`Var`]s in the fixed order of [`ArchSpec::tensor_slots`];
/// BatchNorm running statistics are buffers, kept apart from the parameters.
#[derive(Debug, Clone)]
pub struct Model {
    spec: ArchSpec,
    dtype: DType,
    device: Device,
    params: Vec<NamedVar>,
    buffers: Vec<NamedVar>,
    net: Network,
}

fn init_tensor(
    slot: &TensorSlot,
    seed: u64,
    stream: u64,
    dtype: DType,
    dev: &Device,
) -> Result<Tensor> {
    let shape = slot.shape.as_slice();
    Ok(match slot.init {
        Init::Ones => Tensor::ones(shape, dtype, dev)?,
        Init::Zeros => Tensor::zeros(shape, dtype, dev)?,
        Init::Uniform { bound } => {
            let mut r = rng::rng_stream(seed, stream);
            let v: Vec<f64> = (0..slot.numel())
                .map(|_| r.random_range(-bound..bound))
                .collect();
            Tensor::from_vec(v, shape, dev)?.to_dtype(dtype)?
        }
    })
}

impl Model {
    /// A freshly initialised model (PyTorch's default initialisation, drawn from `seed`).
    pub fn new(spec: ArchSpec, dtype: DType, device: &Device, seed: u64) -> Result<Self> {
        spec.validate()?;
        let mut tensors = HashMap::new();
        for (i, slot) in spec.tensor_slots().iter().enumerate() {
            tensors.insert(
                slot.name.clone(),
                init_tensor(slot, seed, i as u64, dtype, device)?,
            );
        }
        Self::from_tensors(spec, dtype, device, tensors, "initialisation")
    }

    /// A model from named tensors (a checkpoint). Every tensor of the spec must be present with
    /// the right shape and finite values; `context` (a file path) is named in errors. Tensors are
    /// converted to `dtype` and moved to `device`. Extra names are ignored here.
    pub fn from_tensors(
        spec: ArchSpec,
        dtype: DType,
        device: &Device,
        mut tensors: HashMap<String, Tensor>,
        context: &str,
    ) -> Result<Self> {
        spec.validate()?;
        let mut params = Vec::new();
        let mut buffers = Vec::new();
        let mut by_name = HashMap::new();
        for slot in spec.tensor_slots() {
            let t = tensors
                .remove(&slot.name)
                .ok_or_else(|| Error::MissingTensor {
                    path: context.into(),
                    name: slot.name.clone(),
                    available: "(see `terrain info`)".into(),
                })?;
            if t.dims() != slot.shape.as_slice() {
                return Err(Error::ShapeMismatch {
                    context: context.to_string(),
                    name: slot.name.clone(),
                    expected: slot.shape.clone(),
                    found: t.dims().to_vec(),
                });
            }
            check_finite(&t, &slot.name, context)?;
            let var = Var::from_tensor(&t.to_dtype(dtype)?.to_device(device)?)?;
            by_name.insert(slot.name.clone(), var.clone());
            let nv = NamedVar {
                name: slot.name,
                var,
            };
            match slot.role {
                Role::Parameter => params.push(nv),
                Role::Buffer => buffers.push(nv),
            }
        }
        let net = build_network(&spec, &by_name);
        Ok(Model {
            spec,
            dtype,
            device: device.clone(),
            params,
            buffers,
            net,
        })
    }

    /// The architecture.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// The floating-point type of every tensor.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device the tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The layers.
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// Trainable parameters, in spec order.
    pub fn params(&self) -> &[NamedVar] {
        &self.params
    }

    /// Non-trainable buffers (BatchNorm running statistics), in spec order.
    pub fn buffers(&self) -> &[NamedVar] {
        &self.buffers
    }

    /// The parameter variables alone, in spec order.
    pub fn vars(&self) -> Vec<Var> {
        self.params.iter().map(|p| p.var.clone()).collect()
    }

    /// The parameters as a candle `VarMap` (sharing storage with the model), for code written
    /// against candle-nn's `VarMap`/`VarBuilder` idiom or its optimisers.
    pub fn varmap(&self) -> candle_nn::VarMap {
        let map = candle_nn::VarMap::new();
        {
            let mut data = map
                .data()
                .lock()
                .expect("a new VarMap's lock is never poisoned");
            for p in &self.params {
                data.insert(p.name.clone(), p.var.clone());
            }
        }
        map
    }

    /// Number of trainable scalars.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// A deep copy: same spec and values, independent storage.
    pub fn deep_clone(&self) -> Result<Self> {
        self.to(self.dtype, &self.device)
    }

    /// The same model converted to another dtype/device (independent storage).
    pub fn to(&self, dtype: DType, device: &Device) -> Result<Self> {
        let tensors = self
            .params
            .iter()
            .chain(&self.buffers)
            .map(|p| Ok((p.name.clone(), p.var.as_tensor().copy()?)))
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(self.spec.clone(), dtype, device, tensors, "conversion")
    }

    /// Reshapes a batch of inputs `[N, ...]` to the shape the network expects, converting dtype
    /// and device. Any per-sample shape with the right number of elements is accepted.
    pub fn prepare_input(&self, x: &Tensor) -> Result<Tensor> {
        let want = self.spec.input_shape();
        let per_sample: usize = want.iter().product();
        let dims = x.dims();
        let got: usize = dims.iter().skip(1).product();
        if dims.len() < 2 || got != per_sample {
            return Err(Error::DataModelMismatch {
                arch: self.spec.to_string(),
                data: dims.iter().skip(1).copied().collect(),
                reason: format!(
                    "the network takes {per_sample} values per sample ({want:?}), the data has {got}"
                ),
            });
        }
        let mut shape = vec![dims[0]];
        shape.extend(want);
        Ok(x.to_device(&self.device)?
            .to_dtype(self.dtype)?
            .reshape(shape)?)
    }

    /// Forward pass: outputs `[N, output_dim]`. `train` selects BatchNorm batch statistics
    /// (and running-statistics updates); `false` is evaluation mode.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(x, train, train)
    }

    /// Forward pass with explicit control of BatchNorm running-statistics updates (SAM's second
    /// pass uses batch statistics without updating them).
    pub fn forward_with(&self, x: &Tensor, train: bool, update_stats: bool) -> Result<Tensor> {
        let x = self.prepare_input(x)?;
        let upd = train && update_stats;
        match &self.net {
            Network::Mlp(ls) => {
                let mut h = x;
                for l in ls {
                    h = match l {
                        MlpLayer::Linear(lin) => lin.forward(&h)?,
                        MlpLayer::BatchNorm(bn) => bn.forward(&h, train, upd)?,
                        MlpLayer::Activation(a) => layers::activate(&h, *a)?,
                    };
                }
                Ok(h)
            }
            Network::Cnn {
                convs,
                activation,
                fc,
            } => {
                let mut h = x;
                for c in convs {
                    h = layers::max_pool2x2(&layers::activate(&c.forward(&h)?, *activation)?)?;
                }
                fc.forward(&h.flatten_from(1)?)
            }
            Network::ResNet {
                conv1,
                bn1,
                blocks,
                linear,
            } => {
                let mut h = bn1.forward(&conv1.forward(&x)?, train, upd)?.relu()?;
                for b in blocks {
                    let out = b.bn1.forward(&b.conv1.forward(&h)?, train, upd)?.relu()?;
                    let out = b.bn2.forward(&b.conv2.forward(&out)?, train, upd)?;
                    let skip = match &b.shortcut {
                        Some((c, bn)) => bn.forward(&c.forward(&h)?, train, upd)?,
                        None => h,
                    };
                    h = (out + skip)?.relu()?;
                }
                linear.forward(&layers::global_avg_pool(&h)?)
            }
        }
    }
}

impl ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Model::forward_t(self, xs, train).map_err(candle_core::Error::wrap)
    }
}

/// Fails with [`Error::NonFinite`] naming the first NaN/Inf of `t`.
pub fn check_finite(t: &Tensor, name: &str, context: &str) -> Result<()> {
    let v: Vec<f64> = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1()?;
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFinite {
            context: context.to_string(),
            name: name.to_string(),
            value,
            index,
        });
    }
    Ok(())
}

fn build_network(spec: &ArchSpec, v: &HashMap<String, Var>) -> Network {
    // The spec's slots and this builder agree by construction; a missing name is a bug here.
    let get = |n: &str| {
        v.get(n)
            .unwrap_or_else(|| panic!("internal: no tensor {n}"))
            .clone()
    };
    let opt = |n: &str| v.get(n).cloned();
    let linear = |p: &str| Linear {
        weight: get(&format!("{p}weight")),
        bias: opt(&format!("{p}bias")),
    };
    let bn = |p: &str| BatchNorm {
        weight: get(&format!("{p}weight")),
        bias: get(&format!("{p}bias")),
        running_mean: get(&format!("{p}running_mean")),
        running_var: get(&format!("{p}running_var")),
        eps: 1e-5,
        momentum: 0.1,
    };
    let conv = |n: &str, padding: usize, stride: usize| Conv2d {
        weight: get(&format!("{n}weight")),
        bias: opt(&format!("{n}bias")),
        padding,
        stride,
    };
    match spec {
        ArchSpec::Mlp(m) => {
            let mut ls = Vec::new();
            let mut idx = 0;
            for _ in &m.hidden {
                ls.push(MlpLayer::Linear(linear(&format!("{idx}."))));
                idx += 1;
                if m.batch_norm {
                    ls.push(MlpLayer::BatchNorm(bn(&format!("{idx}."))));
                    idx += 1;
                }
                ls.push(MlpLayer::Activation(m.activation));
                idx += 1;
            }
            ls.push(MlpLayer::Linear(linear(&format!("{idx}."))));
            Network::Mlp(ls)
        }
        ArchSpec::Cnn(c) => Network::Cnn {
            convs: (0..c.channels.len())
                .map(|i| conv(&format!("conv{i}."), 1, 1))
                .collect(),
            activation: c.activation,
            fc: linear("fc."),
        },
        ArchSpec::ResNet18(r) => {
            let mut in_planes = r.width;
            let mut blocks = Vec::new();
            for (i, (stage, planes, stride)) in crate::spec::resnet18_blocks(r.width)
                .into_iter()
                .enumerate()
            {
                let p = format!("layer{stage}.{}.", i % 2);
                let shortcut = (stride != 1 || in_planes != planes).then(|| {
                    (
                        conv(&format!("{p}shortcut.0."), 0, stride),
                        bn(&format!("{p}shortcut.1.")),
                    )
                });
                blocks.push(BasicBlock {
                    conv1: conv(&format!("{p}conv1."), 1, stride),
                    bn1: bn(&format!("{p}bn1.")),
                    conv2: conv(&format!("{p}conv2."), 1, 1),
                    bn2: bn(&format!("{p}bn2.")),
                    shortcut,
                });
                in_planes = planes;
            }
            Network::ResNet {
                conv1: conv("conv1.", 1, 1),
                bn1: bn("bn1."),
                blocks,
                linear: linear("linear."),
            }
        }
    }
}
