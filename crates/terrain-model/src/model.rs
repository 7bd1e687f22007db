//! [`Model`]: an architecture spec with its tensors as candle `Var`s and a forward pass.

use std::collections::HashMap;

use candle_core::{DType, Device, ModuleT, Tensor, Var};
use rand::Rng as _;

use crate::{
    ArchSpec, Error, Result,
    data::{Dataset, first_non_finite},
    layers::NormMode,
    network::Network,
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
        let elements = spec.element_count().unwrap_or(usize::MAX);
        // The tensors, and as much again while each is drawn in f64 and converted.
        let bytes = (elements as u64).saturating_mul(dtype.size_in_bytes() as u64 + 8);
        crate::device::check_memory(
            &format!(
                "model {spec} ({} parameters, {dtype:?})",
                spec.param_count()
            ),
            bytes,
        )?;
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
        let description = spec.network();
        let available = {
            let mut names: Vec<&String> = tensors.keys().collect();
            names.sort();
            crate::error::name_list(&names)
        };
        let net = description.try_map(|slot: &TensorSlot| -> Result<Var> {
            let t = tensors
                .remove(&slot.name)
                .ok_or_else(|| Error::MissingTensor {
                    path: context.into(),
                    name: slot.name.clone(),
                    available: available.clone(),
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
            let nv = NamedVar {
                name: slot.name.clone(),
                var: var.clone(),
            };
            match slot.role {
                Role::Parameter => params.push(nv),
                Role::Buffer => buffers.push(nv),
            }
            Ok(var)
        })?;
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

    /// The layers, bound to this model's variables: the architecture's one description
    /// ([`ArchSpec::network`]) that the forward pass and curvature sweeps interpret.
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

    /// Forward pass in evaluation mode (BatchNorm on its running statistics) for values only,
    /// not to be differentiated: by the differentiation engine's forward pass keeping no tape
    /// where it runs ([`engine::logits`](crate::engine::logits): the CPU in f32/f64), else
    /// candle's ([`Model::forward_t`] with `train` false). Evaluation
    /// ([`crate::loss::evaluate`]) runs on this.
    pub fn forward_eval(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(z) = crate::engine::logits(self, x)? {
            return Ok(z);
        }
        self.forward_t(x, false)
    }

    /// Forward pass with explicit control of BatchNorm running-statistics updates (SAM's second
    /// pass uses batch statistics without updating them).
    pub fn forward_with(&self, x: &Tensor, train: bool, update_stats: bool) -> Result<Tensor> {
        self.forward_mode(x, NormMode::from_flags(train, update_stats))
    }

    /// Forward pass with BatchNorm in `mode`.
    pub fn forward_mode(&self, x: &Tensor, mode: NormMode) -> Result<Tensor> {
        self.net.forward(&self.prepare_input(x)?, mode)
    }

    /// Recomputes every BatchNorm layer's running statistics on `data`, as
    /// `torch.optim.swa_utils.update_bn` and the mode-connectivity code do for weights that were
    /// never trained as they are (points on a path between checkpoints, a perturbed model): the
    /// running statistics are reset and replaced by the cumulative average, over batches of
    /// `batch_size` rows in data order, of each batch's mean and unbiased variance (weighted by
    /// batch size), computed in training mode. Parameters are not touched and nothing is
    /// differentiated. A model without BatchNorm is left as it is. Returns the number of layers
    /// recomputed.
    pub fn recompute_batch_norm_stats(&self, data: &Dataset, batch_size: usize) -> Result<usize> {
        let norms = self.net.batch_norms();
        if norms.is_empty() {
            return Ok(0);
        }
        if data.is_empty() {
            return Err(Error::config(
                "data",
                &data.name,
                "is empty: BatchNorm statistics need at least one row",
            ));
        }
        if batch_size == 0 {
            return Err(Error::config(
                "batch_size",
                batch_size,
                "must be at least 1",
            ));
        }
        for bn in &norms {
            bn.running_mean.set(&bn.running_mean.zeros_like()?)?;
            bn.running_var.set(&bn.running_var.ones_like()?)?;
        }
        let mut seen = 0usize;
        for batch in data.batches(batch_size, None, false)? {
            let batch = batch?;
            let rows = batch.x.dim(0)?;
            // Cumulative average: batch k gets weight rows_k / (rows seen so far + rows_k).
            let weight = rows as f64 / (seen + rows) as f64;
            self.forward_mode(&batch.x.detach(), NormMode::UpdateWith(weight))?;
            seen += rows;
        }
        Ok(norms.len())
    }
}

impl ModuleT for Model {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        Model::forward_t(self, xs, train).map_err(candle_core::Error::wrap)
    }
}

/// Fails with [`Error::NonFinite`] naming the first NaN/Inf of tensor `name` from `context`
/// (a file path or a description).
pub fn check_finite(t: &Tensor, name: &str, context: &str) -> Result<()> {
    match first_non_finite(t)? {
        None => Ok(()),
        Some((index, value)) => Err(Error::NonFinite {
            context: context.to_string(),
            name: name.to_string(),
            value,
            index,
        }),
    }
}
