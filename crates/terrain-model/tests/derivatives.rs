//! Every layer type and architecture is twice differentiable through candle: the autodiff
//! gradient and Hessian-vector product agree with central finite differences in f64.

use candle_core::{DType, Device, Tensor};
use terrain_model::{
    ArchSpec, Model, ParamVec, autodiff,
    data::Targets,
    loss::{self, LossKind},
    rng,
};

const EPS: f64 = 1e-5;

struct Case {
    spec: &'static str,
    loss: LossKind,
    /// BatchNorm mode: true = batch statistics (training), false = running statistics.
    train: bool,
    tol: f64,
}

fn batch(spec: &ArchSpec, n: usize, loss: LossKind, seed: u64) -> (Tensor, Targets) {
    let dev = Device::Cpu;
    let mut shape = vec![n];
    shape.extend(spec.input_shape());
    let x = rng::normal_tensor(&shape, seed, DType::F64, &dev).unwrap();
    let k = spec.output_dim();
    let y = match loss {
        LossKind::Ce => {
            let labels: Vec<u32> = (0..n)
                .map(|i| ((i as u64 * 7 + seed) % k as u64) as u32)
                .collect();
            Targets::Classes(Tensor::from_vec(labels, n, &dev).unwrap())
        }
        LossKind::Mse => {
            Targets::Values(rng::normal_tensor(&[n, k], seed + 1000, DType::F64, &dev).unwrap())
        }
    };
    (x, y)
}

fn loss_at(model: &Model, x: &Tensor, y: &Targets, kind: LossKind, train: bool) -> Tensor {
    let out = model.forward_with(x, train, false).unwrap();
    loss::mean(&out, y, kind).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
}

fn grads(model: &Model, x: &Tensor, y: &Targets, kind: LossKind, train: bool) -> ParamVec {
    let l = loss_at(model, x, y, kind, train);
    let vars: Vec<&Tensor> = model.params().iter().map(|p| p.var.as_tensor()).collect();
    let g = autodiff::grad(&l, &vars).unwrap();
    ParamVec {
        names: model.params().iter().map(|p| p.name.clone()).collect(),
        tensors: g.into_iter().map(|t| t.detach()).collect(),
    }
}

fn hvp(
    model: &Model,
    x: &Tensor,
    y: &Targets,
    kind: LossKind,
    train: bool,
    v: &ParamVec,
) -> ParamVec {
    let l = loss_at(model, x, y, kind, train);
    let vars: Vec<&Tensor> = model.params().iter().map(|p| p.var.as_tensor()).collect();
    let g = autodiff::grad(&l, &vars).unwrap();
    let mut gv = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
    for (gi, vi) in g.iter().zip(&v.tensors) {
        gv = (gv + (gi * vi).unwrap().sum_all().unwrap()).unwrap();
    }
    let hv = autodiff::grad(&gv, &vars).unwrap();
    ParamVec {
        names: v.names.clone(),
        tensors: hv.into_iter().map(|t| t.detach()).collect(),
    }
}

fn rel_err(a: &ParamVec, b: &ParamVec) -> f64 {
    a.sub(b).unwrap().norm().unwrap() / b.norm().unwrap().max(1e-300)
}

fn check(case: &Case) {
    autodiff::ensure_second_order().unwrap();
    let spec: ArchSpec = case.spec.parse().unwrap();
    let model = Model::new(spec.clone(), DType::F64, &Device::Cpu, 3).unwrap();
    // Give BatchNorm non-trivial running statistics so eval mode is a real test.
    for b in model.buffers() {
        let init = if b.name.ends_with("running_var") {
            1.5
        } else {
            0.1
        };
        b.var
            .set(&(b.var.ones_like().unwrap() * init).unwrap())
            .unwrap();
    }
    let (x, y) = batch(&spec, 6, case.loss, 1);
    let w0 = ParamVec::from_model(&model).unwrap();
    // A unit direction, so the finite-difference step is EPS in weight space.
    let v = ParamVec::random_gaussian(&model, 11).unwrap();
    let v = v.scale(1.0 / v.norm().unwrap()).unwrap();

    // Gradient: directional derivative against central differences of the loss.
    let g = grads(&model, &x, &y, case.loss, case.train);
    let ad = g.dot(&v).unwrap();
    w0.axpy(EPS, &v).unwrap().assign_to(&model).unwrap();
    let lp = scalar(&loss_at(&model, &x, &y, case.loss, case.train));
    w0.axpy(-EPS, &v).unwrap().assign_to(&model).unwrap();
    let lm = scalar(&loss_at(&model, &x, &y, case.loss, case.train));
    w0.assign_to(&model).unwrap();
    let fd = (lp - lm) / (2.0 * EPS);
    let grad_err = (ad - fd).abs() / fd.abs().max(1e-12);
    assert!(
        grad_err <= case.tol,
        "{}: gradient rel. error {grad_err:.2e} (AD {ad}, FD {fd})",
        case.spec
    );

    // Hessian-vector product: double backward against central differences of the gradient.
    let hv = hvp(&model, &x, &y, case.loss, case.train, &v);
    w0.axpy(EPS, &v).unwrap().assign_to(&model).unwrap();
    let gp = grads(&model, &x, &y, case.loss, case.train);
    w0.axpy(-EPS, &v).unwrap().assign_to(&model).unwrap();
    let gm = grads(&model, &x, &y, case.loss, case.train);
    w0.assign_to(&model).unwrap();
    let fd_hv = gp.sub(&gm).unwrap().scale(1.0 / (2.0 * EPS)).unwrap();
    let hvp_err = rel_err(&hv, &fd_hv);
    assert!(
        hvp_err <= case.tol,
        "{}: HVP rel. error {hvp_err:.2e}",
        case.spec
    );
    eprintln!(
        "{}: gradient rel. error {grad_err:.1e}, HVP rel. error {hvp_err:.1e}",
        case.spec
    );
    assert!(
        fd_hv.norm().unwrap() > 1e-8,
        "{}: degenerate test, Hv ≈ 0",
        case.spec
    );
}

macro_rules! fd_tests {
    ($($name:ident: $spec:expr, $loss:ident, $train:expr;)*) => {$(
        #[test]
        fn $name() {
            check(&Case { spec: $spec, loss: LossKind::$loss, train: $train, tol: 1e-6 });
        }
    )*};
}

fd_tests! {
    mlp_relu: "mlp:5-7-6-3:relu", Ce, false;
    mlp_tanh: "mlp:5-7-6-3:tanh", Ce, false;
    mlp_gelu: "mlp:5-7-6-3:gelu", Ce, false;
    mlp_silu: "mlp:5-7-6-3:silu", Ce, false;
    mlp_sigmoid: "mlp:5-7-6-3:sigmoid", Ce, false;
    mlp_softplus: "mlp:5-7-6-3:softplus", Ce, false;
    mlp_linear_model_mse: "mlp:5-2:tanh", Mse, false;
    mlp_tanh_mse: "mlp:5-8-2:tanh", Mse, false;
    mlp_nobias: "mlp:5-7-3:tanh:nobias", Ce, false;
    mlp_batchnorm_train: "mlp:5-7-6-3:tanh:bn", Ce, true;
    mlp_batchnorm_eval: "mlp:5-7-6-3:tanh:bn", Ce, false;
    ishida_mlp_batchnorm_relu: "mlp:2-9-9-2:relu:bn:nobias", Ce, true;
    cnn_relu_maxpool: "cnn:2x8x8-3-4-3:relu", Ce, false;
    cnn_tanh_maxpool: "cnn:1x4x4-3-3:tanh", Ce, false;
    cnn_softplus_mse: "cnn:1x4x4-2-2:softplus", Mse, false;
    resnet18_train: "resnet18:3x8x8:w2:4", Ce, true;
    resnet18_eval: "resnet18:3x8x8:w2:4", Ce, false;
    resnet18_tanh_eval: "resnet18:3x8x8:w2:4:act=tanh", Ce, false;
}

#[test]
fn soft_targets_cross_entropy_is_twice_differentiable() {
    autodiff::ensure_second_order().unwrap();
    let spec: ArchSpec = "mlp:4-5-3:tanh".parse().unwrap();
    let model = Model::new(spec, DType::F64, &Device::Cpu, 0).unwrap();
    let x = rng::normal_tensor(&[4, 4], 1, DType::F64, &Device::Cpu).unwrap();
    let logits = rng::normal_tensor(&[4, 3], 2, DType::F64, &Device::Cpu).unwrap();
    let p = candle_nn::ops::softmax(&logits, 1).unwrap();
    let y = Targets::Soft(p);
    let v = ParamVec::random_rademacher(&model, 2).unwrap();
    let w0 = ParamVec::from_model(&model).unwrap();
    let hv = hvp(&model, &x, &y, LossKind::Ce, false, &v);
    w0.axpy(EPS, &v).unwrap().assign_to(&model).unwrap();
    let gp = grads(&model, &x, &y, LossKind::Ce, false);
    w0.axpy(-EPS, &v).unwrap().assign_to(&model).unwrap();
    let gm = grads(&model, &x, &y, LossKind::Ce, false);
    let fd = gp.sub(&gm).unwrap().scale(1.0 / (2.0 * EPS)).unwrap();
    assert!(rel_err(&hv, &fd) < 1e-6);
}
