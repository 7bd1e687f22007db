//! The sweep of [`super::tensor`] on plain host buffers: the same per-layer formulas (see the
//! parent module's table), computed on `Vec<T>` (`T` = `f32` or `f64`) with matrix products by
//! the `gemm` crate called directly and elementwise work in plain loops, so a product costs its
//! FLOPs and not candle's per-op overhead and thread barriers.
//!
//! Layouts. A node's value over `N` rows is `[N, feat]` row-major; images are kept channels-last
//! (`[N, H, W, C]`), so a convolution is one im2col copy and one product over all `N·H'·W'`
//! output positions (`cols(x) Wᵀ` with the kernel as rows `[out, kh·kw·C]`), its input adjoint
//! one product and one col2im scatter, and its kernel gradient one product `gᵀ cols(x)`.
//! `Flatten` permutes channels-last back to the model's `C·H·W` feature order, so linear weights
//! are used as they are. Tangents and second-order adjoints of `k` directions are `[k, N, feat]`;
//! the maps by a layer's own weight run as one product over `k·N` rows, the maps by direction
//! blocks as one product per direction.
//!
//! Weights, a single direction and each batch's flat inputs are read in place in candle's CPU
//! storage, read-locked for the sweep ([`Locked`]); what must change layout (kernels as rows,
//! images channels-last, several directions side by side, weights transposed for the forward
//! pass, [`transpose`]) is copied once per sweep. Each product is written straight into one
//! flat vector. On a 2-core machine these copies, made on the calling thread while the pool's
//! workers waited, had been about a fifth of an MLP gradient.
//!
//! Threads. A batch with rows enough ([`MIN_PART_ROWS`] per block) is split into [`PARTS`]
//! blocks of rows, swept whole in parallel, each into its own accumulators, added up after the
//! last batch: the loss and all its derivatives are sums over rows, so the split is exact up to
//! rounding, needs no synchronisation inside the sweep, and splits the products that reduce over
//! rows (weight and kernel gradients, with 16–32 output rows in a small CNN) as well as those
//! that do not. The block count is fixed, not the thread count, so one and two threads give the
//! same numbers. On a pool of one thread the blocks run in order on the calling thread, which
//! never hands work to the pool: each hand-over, a futex wake-up and sleep, had cost about as
//! much as a small MLP's forward pass (the digits MLP 64-32-10's 51×51 loss surface, batch
//! 512, one thread: 8.2 s, now 2.9 s). With no more threads than blocks each block stays on its
//! thread; smaller batches, and blocks on a larger pool, split their larger products by rows and
//! their long elementwise loops by blocks instead.
//!
//! The loss alone ([`Product::Loss`], and [`logits`], the forward pass evaluation runs on) is the
//! same forward pass keeping no tape: each layer's record goes back to the buffer pool as soon as
//! the next layer has its input.
//!
//! The exact diagonal ([`Product::Diagonal`]) carries the candle sweep's symmetric factors, laid
//! out C-major as `[C, N, feat]` like `ġ`, so each map by a layer's own weight is the same
//! product over `C·N` rows. A smooth activation's residual factors (and the MSE loss's) are
//! one-hot, `S[c, n, j] = δ_cj m[n, j]`, and stay unmaterialised as `m` while only elementwise
//! maps meet them: at a linear or convolution weight their `Σ_c S²` is `m²`, at BatchNorm the
//! same; they are materialised only where they must pass a layer's input Jacobian. A linear
//! weight's diagonal is `(Σ_c S²)ᵀ x²` (one product over `N` for all factors together), a
//! kernel's, whose square lies outside the sum over positions, the per-`(c, n)` kernel gradient
//! `S[c, n]ᵀ cols(x_n)` squared and summed, threaded over rows.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub};

use crate::{
    Activation, Model,
    data::{Batch, Targets},
    loss::LossKind,
    network::Layer,
};
use candle_core::{DType, Device, Tensor, TensorId};
use rayon::prelude::*;

use super::common::ce_needs_labels;
use super::tensor::check_residual_factor;
use super::{Curvature, Output, Product, Request};
use crate::{Error, Result};

/// A floating-point element of the host sweep (`f32` or `f64`).
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + PartialOrd
    + Default
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + MulAssign
{
    /// The candle dtype of `Self`.
    const DTYPE: DType;
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// From an `f64`.
    fn of(x: f64) -> Self;
    /// To an `f64`.
    fn to_f64(self) -> f64;
    /// `eˣ`.
    fn exp(self) -> Self;
    /// `tanh x`.
    fn tanh(self) -> Self;
    /// `√x`.
    fn sqrt(self) -> Self;
    /// `ln x`.
    fn ln(self) -> Self;
    /// `|x|`.
    fn abs(self) -> Self;
    /// The error function (candle's implementation).
    fn erf(self) -> Self;
    /// A tensor's elements, row-major.
    fn host(t: &Tensor) -> Result<Vec<Self>>;
    /// A CPU storage's values, if it holds `Self`.
    fn values(c: &candle_core::CpuStorage) -> Option<&[Self]>;
    /// A CPU tensor of `shape` from row-major elements.
    fn tensor(v: Vec<Self>, shape: &[usize]) -> Result<Tensor>;
    /// Runs `f` on the process's pool of free buffers of this type (one pool for all threads: a
    /// sweep's blocks run on whichever worker takes them, and its accumulators are returned on
    /// the calling thread, so per-thread pools drained on the workers and filled on the caller).
    fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R;
}

macro_rules! real {
    ($t:ty, $dtype:expr, $erf:path, $pool:ident) => {
        static $pool: std::sync::Mutex<Vec<Vec<$t>>> = std::sync::Mutex::new(Vec::new());
        impl Real for $t {
            const DTYPE: DType = $dtype;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn of(x: f64) -> Self {
                x as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn erf(self) -> Self {
                $erf(self)
            }
            fn host(t: &Tensor) -> Result<Vec<Self>> {
                // Copied straight from a contiguous CPU storage into a pooled buffer: no fresh
                // allocation (and page faults) per sweep for the weights and the batch.
                {
                    let (storage, layout) = t.storage_and_layout();
                    if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
                        (&*storage, layout.contiguous_offsets())
                        && let Ok(src) = cpu.as_slice::<$t>()
                    {
                        let mut v = dirty::<$t>(b - a);
                        v.copy_from_slice(&src[a..b]);
                        return Ok(v);
                    }
                }
                Ok(t.flatten_all()?.to_vec1::<$t>()?)
            }
            fn values(c: &candle_core::CpuStorage) -> Option<&[Self]> {
                c.as_slice::<$t>().ok()
            }
            fn tensor(v: Vec<Self>, shape: &[usize]) -> Result<Tensor> {
                Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
            }
            fn with_pool<R>(f: impl FnOnce(&mut Vec<Vec<Self>>) -> R) -> R {
                f(&mut $pool
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner))
            }
        }
    };
}

real!(f32, DType::F32, candle_core::cpu::erf::erf_f32, POOL_F32);
real!(f64, DType::F64, candle_core::cpu::erf::erf_f64, POOL_F64);

/// A contiguous CPU tensor's values in candle's own storage, read-locked while held: the sweep
/// reads weights, inputs and directions in place instead of copying them on the calling thread
/// while the pool's workers wait.
struct Locked<'t> {
    storage: candle_core::StorageRef<'t>,
    range: std::ops::Range<usize>,
}

impl<'t> Locked<'t> {
    /// `t`'s storage, if `t` is a contiguous CPU tensor.
    fn new(t: &'t Tensor) -> Option<Self> {
        let (storage, layout) = t.storage_and_layout();
        let (a, b) = layout.contiguous_offsets()?;
        matches!(&*storage, candle_core::Storage::Cpu(_)).then_some(Locked {
            storage,
            range: a..b,
        })
    }

    /// The values, if they are of dtype `T`.
    fn values<T: Real>(&self) -> Option<&[T]> {
        match &*self.storage {
            candle_core::Storage::Cpu(c) => T::values(c).map(|v| &v[self.range.clone()]),
            _ => None,
        }
    }
}

/// `t`'s values of dtype `T`: borrowed from `lock` (`t`'s, where it could be taken), else copied.
fn values_of<'l, T: Real>(t: &Tensor, lock: Option<&'l Locked<'_>>) -> Result<Cow<'l, [T]>> {
    Ok(match lock.and_then(Locked::values::<T>) {
        Some(v) => Cow::Borrowed(v),
        None => Cow::Owned(T::host(&t.to_dtype(T::DTYPE)?)?),
    })
}

/// Returns an owned buffer to the pool (a borrowed one is left alone).
fn give_cow<T: Real>(v: Cow<'_, [T]>) {
    if let Cow::Owned(v) = v {
        give(v);
    }
}

/// The most bytes the buffer pool of one type keeps between uses: a ResNet-18 (width 16, 32×32
/// images, batch 256) gradient's working set fits, so repeated sweeps fault no fresh pages in
/// (with the 256 MiB of before they faulted in about 1.8 GB a sweep, a fifth of its time).
/// [`release_buffers`] empties the pools.
const MAX_POOLED_BYTES: usize = 1 << 30;

/// [`MAX_POOLED_BYTES`] in elements of `T`.
fn max_pooled<T>() -> usize {
    MAX_POOLED_BYTES / std::mem::size_of::<T>()
}

/// Frees every buffer the host sweep keeps between sweeps.
pub(super) fn release_buffers() {
    f32::with_pool(|p| p.clear());
    f64::with_pool(|p| p.clear());
}

/// A buffer of `n` elements from the pool (or fresh), its contents arbitrary
/// (initialised, left from an earlier use): for outputs that are written in full.
fn dirty<T: Real>(n: usize) -> Vec<T> {
    let found = T::with_pool(|pool| {
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= n && v.capacity() <= 2 * n.max(1024))
            // Preferably one long enough already (no lengthening to write), then the smallest.
            .min_by_key(|(_, v)| (v.len() < n, v.capacity()))
            .map(|(i, _)| i);
        best.map(|i| pool.remove(i))
    });
    match found {
        // By capacity, not length: a buffer shortened by an earlier smaller use still owns its
        // touched memory, and lengthening it writes there without faulting pages in.
        Some(mut v) => {
            v.resize(n, T::ZERO);
            v
        }
        None => {
            vec![T::ZERO; n]
        }
    }
}

/// A zeroed buffer of `n` elements (from the pool where one fits).
fn zeros<T: Real>(n: usize) -> Vec<T> {
    let mut v = dirty(n);
    v.fill(T::ZERO);
    v
}

/// Returns a buffer to the pool (dropped if the pool is full), so the next
/// sweep's buffers of the same size are neither mapped nor faulted in afresh.
fn give<T: Real>(v: Vec<T>) {
    if v.capacity() < 1024 {
        return;
    }
    let cap = max_pooled::<T>();
    if v.capacity() > cap {
        return;
    }
    T::with_pool(|pool| {
        // The oldest buffers make room: the pool holds what the latest sweeps used.
        let mut held: usize = pool.iter().map(Vec::capacity).sum();
        let mut evict = 0;
        while held + v.capacity() > cap {
            held -= pool[evict].capacity();
            evict += 1;
        }
        pool.drain(..evict);
        pool.push(v);
    });
}

/// Returns a buffer, if any, to the pool.
fn give_opt<T: Real>(v: Option<Vec<T>>) {
    if let Some(v) = v {
        give(v);
    }
}

/// Returns a flow's buffers to the pool.
fn give_flow<T: Real>(f: Flow<T>) {
    give_opt(f.g);
    give_opt(f.dg);
    for x in f.factors {
        x.s.give();
    }
}

/// The fewest rows of a product's block when it is split over threads by rows.
const MIN_SPLIT_ROWS: usize = 32;

/// The fewest rows of one part of a batch split into blocks of rows ([`sweep_batch`]).
const MIN_PART_ROWS: usize = 16;

/// The most blocks a batch is split into ([`sweep_batch`]): a fixed count, not the thread count,
/// so that results do not depend on how many threads compute them.
const PARTS: usize = 2;

thread_local! {
    /// Set while the thread runs one part of a batch split over the pool: that part's products
    /// and loops then stay on the thread.
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// The threads a product or an elementwise loop may split over: rayon's pool, or 1 inside one
/// part of a split batch.
fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// [`serial`] where `alone`, else `f` as it is.
fn serial_if<R>(alone: bool, f: impl FnOnce() -> R) -> R {
    if alone { serial(f) } else { f() }
}

/// Runs `f` with every product and loop it starts on the calling thread.
fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SERIAL.with(|s| s.replace(true)));
    f()
}

/// The blocks of `(c, n)` pairs a kernel's exact diagonal is summed in ([`conv_kernel_diag`]).
const KERNEL_DIAG_BLOCKS: usize = 8;

/// Products smaller than this many multiply-adds run on the calling thread.
const PARALLEL_MACS: usize = 1 << 18;

/// The most elements of direction patches a convolution keeps from its forward pass.
const MAX_KEPT_PATCHES: usize = 1 << 25;

/// Elementwise loops over more elements than this split over rayon's pool.
const PARALLEL_ELEMS: usize = 1 << 16;

/// A strided read-only matrix view: element `(i, j)` at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    rs: usize,
    cs: usize,
}

/// A row-major `[rows, cols]` matrix.
fn rm<T>(data: &[T], cols: usize) -> View<'_, T> {
    View {
        data,
        rs: cols,
        cs: 1,
    }
}

/// The transpose of a row-major `[rows, cols]` matrix.
fn tr<T>(data: &[T], cols: usize) -> View<'_, T> {
    View {
        data,
        rs: 1,
        cs: cols,
    }
}

/// `dst[m, n]` (row-major) `= a·b` (`acc`: `+= a·b`), `a` `[m, kk]`, `b` `[kk, n]`.
fn mm<T: Real>(m: usize, n: usize, kk: usize, dst: &mut [T], acc: bool, a: View<T>, b: View<T>) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n, "gemm destination too small");
    if kk == 0 {
        if !acc {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    assert!(
        a.data.len() > (m - 1) * a.rs + (kk - 1) * a.cs
            && b.data.len() > (kk - 1) * b.rs + (n - 1) * b.cs,
        "gemm operand too small"
    );
    let threads = threads();
    let big = threads > 1 && m * n * kk >= PARALLEL_MACS;
    let chunk = m.div_ceil(threads);
    if big && chunk >= MIN_SPLIT_ROWS {
        // Row blocks of the product, one single-threaded product each: no synchronisation
        // inside the products (gemm's own split gains little on these shapes).
        dst[..m * n]
            .par_chunks_mut(chunk * n)
            .enumerate()
            .for_each(|(ci, d)| {
                let rows = d.len() / n;
                let a = View {
                    data: &a.data[ci * chunk * a.rs..],
                    ..a
                };
                gemm_raw(rows, n, kk, d, acc, a, b, gemm::Parallelism::None);
            });
        return;
    }
    let par = if big {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    gemm_raw(m, n, kk, dst, acc, a, b, par);
}

/// [`mm`] on the calling thread (for products inside a parallel loop).
#[allow(clippy::too_many_arguments)]
fn mm_one<T: Real>(
    m: usize,
    n: usize,
    kk: usize,
    dst: &mut [T],
    acc: bool,
    a: View<T>,
    b: View<T>,
) {
    if m == 0 || n == 0 || kk == 0 {
        if !acc && m * n > 0 {
            dst[..m * n].fill(T::ZERO);
        }
        return;
    }
    assert!(
        dst.len() >= m * n
            && a.data.len() > (m - 1) * a.rs + (kk - 1) * a.cs
            && b.data.len() > (kk - 1) * b.rs + (n - 1) * b.cs,
        "gemm operand too small"
    );
    gemm_raw(m, n, kk, dst, acc, a, b, gemm::Parallelism::None);
}

/// [`mm`] on one parallelism setting (operands already checked).
#[allow(clippy::too_many_arguments)]
fn gemm_raw<T: Real>(
    m: usize,
    n: usize,
    kk: usize,
    dst: &mut [T],
    acc: bool,
    a: View<T>,
    b: View<T>,
    par: gemm::Parallelism,
) {
    // SAFETY: the asserts of `mm` or `mm_one` (on the whole product, of which this is all or a
    // row block)
    // keep every accessed element inside the slices; `dst` does not
    // alias `a` or `b` (a `&mut` borrow).
    unsafe {
        gemm::gemm(
            m,
            n,
            kk,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
}

/// `f(i, chunk)` over `chunk`-sized pieces of `data`, in parallel when `data` is large.
fn chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if chunk == 0 {
        return;
    }
    if data.len() >= PARALLEL_ELEMS && threads() > 1 {
        data.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    } else {
        data.chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// `a += b`.
fn add_into<T: Real>(a: &mut [T], b: &[T]) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

/// Column sums of a row-major `[rows, cols]` matrix added into `out[cols]`.
fn add_col_sums<T: Real>(out: &mut [T], m: &[T], cols: usize) {
    for row in m.chunks_exact(cols) {
        add_into(out, row);
    }
}

/// The shape of one row of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `[feat]`.
    Flat(usize),
    /// `[H, W, C]` (channels last).
    Img { h: usize, w: usize, c: usize },
}

impl Shape {
    fn len(self) -> usize {
        match self {
            Shape::Flat(f) => f,
            Shape::Img { h, w, c } => h * w * c,
        }
    }

    /// The channel count (the feature count of a flat row), the innermost axis.
    fn channels(self) -> usize {
        match self {
            Shape::Flat(f) => f,
            Shape::Img { c, .. } => c,
        }
    }
}

/// One convolution's geometry on channels-last images.
#[derive(Debug, Clone, Copy)]
struct Geom {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    pad: usize,
    stride: usize,
    ho: usize,
    wo: usize,
}

impl Geom {
    fn positions(&self) -> usize {
        self.ho * self.wo
    }

    fn patch(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// The input position of output `o` and kernel offset `k` along one axis, if inside.
    fn src(&self, o: usize, k: usize, len: usize) -> Option<usize> {
        (o * self.stride + k)
            .checked_sub(self.pad)
            .filter(|&i| i < len)
    }

    /// The first input column of output column `oj`'s window, where the whole window lies
    /// inside the image (its `kw·C` inputs of one image row are then contiguous).
    fn row_inside(&self, oj: usize) -> Option<usize> {
        let j0 = (oj * self.stride).checked_sub(self.pad)?;
        (j0 + self.kw <= self.w).then_some(j0)
    }

    /// `[B, H, W, C]` -> `cols` `[B·P, Q]` (rows in `[kh, kw, C]` order).
    fn im2col<T: Real>(&self, x: &[T], cols: &mut [T]) {
        let (img, q, c) = (self.h * self.w * self.c, self.patch(), self.c);
        chunks_mut(cols, self.positions() * q, |b, out| {
            let x = &x[b * img..(b + 1) * img];
            for oi in 0..self.ho {
                for oj in 0..self.wo {
                    let row = &mut out[(oi * self.wo + oj) * q..][..q];
                    let inside = self.row_inside(oj);
                    for ki in 0..self.kh {
                        let Some(i) = self.src(oi, ki, self.h) else {
                            row[ki * self.kw * c..][..self.kw * c].fill(T::ZERO);
                            continue;
                        };
                        if let Some(j0) = inside {
                            // The kernel row's inputs are contiguous: one copy.
                            row[ki * self.kw * c..][..self.kw * c]
                                .copy_from_slice(&x[(i * self.w + j0) * c..][..self.kw * c]);
                            continue;
                        }
                        for kj in 0..self.kw {
                            let dst = &mut row[(ki * self.kw + kj) * c..][..c];
                            match self.src(oj, kj, self.w) {
                                Some(j) => dst.copy_from_slice(&x[(i * self.w + j) * c..][..c]),
                                None => dst.fill(T::ZERO),
                            }
                        }
                    }
                }
            }
        });
    }

    /// The adjoint of [`Geom::im2col`]: `cols` `[B·P, Q]` -> `x` `[B, H, W, C]` (overwritten).
    fn col2im<T: Real>(&self, cols: &[T], x: &mut [T]) {
        let (img, q, c) = (self.h * self.w * self.c, self.patch(), self.c);
        chunks_mut(x, img, |b, out| {
            out.fill(T::ZERO);
            let cols = &cols[b * self.positions() * q..][..self.positions() * q];
            for oi in 0..self.ho {
                for oj in 0..self.wo {
                    let row = &cols[(oi * self.wo + oj) * q..][..q];
                    let inside = self.row_inside(oj);
                    for ki in 0..self.kh {
                        let Some(i) = self.src(oi, ki, self.h) else {
                            continue;
                        };
                        if let Some(j0) = inside {
                            add_into(
                                &mut out[(i * self.w + j0) * c..][..self.kw * c],
                                &row[ki * self.kw * c..][..self.kw * c],
                            );
                            continue;
                        }
                        for kj in 0..self.kw {
                            if let Some(j) = self.src(oj, kj, self.w) {
                                add_into(
                                    &mut out[(i * self.w + j) * c..][..c],
                                    &row[(ki * self.kw + kj) * c..][..c],
                                );
                            }
                        }
                    }
                }
            }
        });
    }
}

/// `sign · Σ_{(c,n)} (S[c, n]ᵀ cols(x_n))²` `[out, Q]`: a dense factor's kernel diagonal, `s`
/// `[pairs = C·N, P, out]`, `cols` `[N, P, Q]`; per-row products threaded over the pairs, each
/// thread with its own accumulator.
#[allow(clippy::too_many_arguments)]
fn conv_kernel_diag<T: Real>(
    s: &[T],
    cols: &[T],
    pairs: usize,
    n: usize,
    pos: usize,
    out: usize,
    q: usize,
    sign: T,
) -> Vec<T> {
    let one = |acc: &mut Vec<T>, g: &mut Vec<T>, i: usize| {
        let r = i % n;
        let si = &s[i * pos * out..(i + 1) * pos * out];
        let ci = &cols[r * pos * q..(r + 1) * pos * q];
        mm_one(out, q, pos, g, false, tr(si, out), rm(ci, q));
        for (a, &v) in acc.iter_mut().zip(g.iter()) {
            *a += v * v;
        }
    };
    // A fixed number of blocks of pairs, each summed in order, then the blocks in order: the
    // same sums whatever the thread count.
    let size = pairs.div_ceil(KERNEL_DIAG_BLOCKS).max(1);
    let block = |b: usize| {
        let (mut a, mut g) = (vec![T::ZERO; out * q], vec![T::ZERO; out * q]);
        for i in b * size..((b + 1) * size).min(pairs) {
            one(&mut a, &mut g, i);
        }
        a
    };
    let blocks = pairs.div_ceil(size);
    let sums: Vec<Vec<T>> = if threads() > 1 && pairs * pos * out * q >= PARALLEL_MACS {
        (0..blocks).into_par_iter().map(block).collect()
    } else {
        (0..blocks).map(block).collect()
    };
    let mut sums = sums.into_iter();
    let mut acc = sums.next().unwrap_or_else(|| vec![T::ZERO; out * q]);
    for b in sums {
        add_into(&mut acc, &b);
    }
    for a in acc.iter_mut() {
        *a *= sign;
    }
    acc
}

/// A one-hot factor at a convolution's output (`m` `[N, P, out]`, column `c = (p, o)`) through
/// the convolution's input Jacobian: column `c` of row `n` is `m[n, p, o]` times kernel row `o`
/// scattered onto the patch of position `p`; `[P·out, N, H, W, C]`.
fn onehot_conv_input<T: Real>(m: &[T], geom: &Geom, w: &[T], n: usize, out: usize) -> Vec<T> {
    let (img, q, ch) = (geom.h * geom.w * geom.c, geom.patch(), geom.c);
    let pos = geom.positions();
    let mut t = dirty::<T>(pos * out * n * img);
    chunks_mut(&mut t, img, |b, dst| {
        dst.fill(T::ZERO);
        let (c, r) = (b / n, b % n);
        let (p, o) = (c / out, c % out);
        let v = m[(r * pos + p) * out + o];
        if v == T::ZERO {
            return;
        }
        let (oi, oj) = (p / geom.wo, p % geom.wo);
        let wo = &w[o * q..(o + 1) * q];
        for ki in 0..geom.kh {
            for kj in 0..geom.kw {
                if let (Some(i), Some(j)) = (geom.src(oi, ki, geom.h), geom.src(oj, kj, geom.w)) {
                    let d = &mut dst[(i * geom.w + j) * ch..][..ch];
                    let k = &wo[(ki * geom.kw + kj) * ch..][..ch];
                    for (x, &y) in d.iter_mut().zip(k) {
                        *x += v * y;
                    }
                }
            }
        }
    });
    t
}

/// `[out, C, kh, kw]` kernels (`lead` of them stacked) as rows `[out, kh·kw·C]`.
fn kernel_rows<T: Real>(w: &[T], dims: &[usize]) -> Vec<T> {
    let (out, c, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
    let per = out * c * kh * kw;
    let mut r = dirty::<T>(w.len());
    for (src, dst) in w.chunks_exact(per).zip(r.chunks_exact_mut(per)) {
        for o in 0..out {
            for ci in 0..c {
                for ki in 0..kh {
                    for kj in 0..kw {
                        dst[((o * kh + ki) * kw + kj) * c + ci] =
                            src[((o * c + ci) * kh + ki) * kw + kj];
                    }
                }
            }
        }
    }
    r
}

/// The transpose `[cols, rows]` of a row-major `[rows, cols]` matrix, in 8×8 tiles (in parallel
/// blocks of columns when large). gemm packs a transposed right operand element by element, at
/// 2–8× the cost of the product itself for a few rows (a 16-row block of a 512×512 layer: 609 µs
/// against 75 µs with the transpose as operand; 784×256 at 16 rows, 122 against 60; a
/// convolution's kernel, 5–25%), so the forward pass multiplies by `wᵀ` made once per sweep.
fn transpose<T: Real>(src: &[T], rows: usize, cols: usize) -> Vec<T> {
    const B: usize = 8;
    let mut dst = dirty::<T>(rows * cols);
    if rows == 0 || cols == 0 {
        return dst;
    }
    // One block of `B` columns of `src` (`B` rows of `dst`): tiles of `B` source rows.
    let panel = |c0: usize, d: &mut [T]| {
        let cb = d.len() / rows;
        for r0 in (0..rows).step_by(B) {
            let rb = B.min(rows - r0);
            let mut tile = [[T::ZERO; B]; B];
            for r in 0..rb {
                let s = &src[(r0 + r) * cols + c0..][..cb];
                for (c, &v) in s.iter().enumerate() {
                    tile[c][r] = v;
                }
            }
            for (c, t) in tile.iter().enumerate().take(cb) {
                d[c * rows + r0..][..rb].copy_from_slice(&t[..rb]);
            }
        }
    };
    if rows * cols >= PARALLEL_ELEMS && threads() > 1 {
        dst.par_chunks_mut(B * rows)
            .enumerate()
            .for_each(|(i, d)| panel(i * B, d));
    } else {
        for (i, d) in dst.chunks_mut(B * rows).enumerate() {
            panel(i * B, d);
        }
    }
    dst
}

/// The inverse of [`kernel_rows`].
fn kernel_unrows<T: Real>(r: &[T], dims: &[usize]) -> Vec<T> {
    let mut w = vec![T::ZERO; r.len()];
    kernel_unrows_into(r, dims, &mut w);
    w
}

/// [`kernel_unrows`] into `w` (as long as `r`).
fn kernel_unrows_into<T: Real>(r: &[T], dims: &[usize], w: &mut [T]) {
    let (out, c, kh, kw) = (dims[0], dims[1], dims[2], dims[3]);
    let per = out * c * kh * kw;
    for (src, dst) in r.chunks_exact(per).zip(w.chunks_exact_mut(per)) {
        for o in 0..out {
            for ci in 0..c {
                for ki in 0..kh {
                    for kj in 0..kw {
                        dst[((o * c + ci) * kh + ki) * kw + kj] =
                            src[((o * kh + ki) * kw + kj) * c + ci];
                    }
                }
            }
        }
    }
}

/// A layer with its tensors on the host (borrowed from candle's storage where they are used as
/// they are, `'w` the locks' lifetime).
enum HLayer<'w, T: Real> {
    Linear {
        w: Cow<'w, [T]>,
        /// `wᵀ` `[inp, out]`, the forward pass's operand ([`transpose`]).
        wt: Vec<T>,
        b: Option<Cow<'w, [T]>>,
        out: usize,
        inp: usize,
        w_slot: Option<usize>,
        b_slot: Option<usize>,
    },
    Conv {
        /// The kernel as rows `[out, kh·kw·C]`.
        w: Vec<T>,
        /// Its transpose `[kh·kw·C, out]`, the forward pass's operand ([`transpose`]).
        wt: Vec<T>,
        b: Option<Cow<'w, [T]>>,
        out: usize,
        dims: [usize; 4],
        pad: usize,
        stride: usize,
        w_slot: Option<usize>,
        b_slot: Option<usize>,
    },
    Norm {
        /// The running mean (evaluation mode).
        mean: Cow<'w, [T]>,
        /// `1/√(σ² + ε)` of the running variance (evaluation mode).
        r: Vec<T>,
        gamma: Cow<'w, [T]>,
        beta: Cow<'w, [T]>,
        eps: f64,
        g_slot: Option<usize>,
        b_slot: Option<usize>,
    },
    Act(Activation),
    MaxPool,
    Flatten,
    AvgPool,
    Residual {
        main: Vec<HLayer<'w, T>>,
        skip: Vec<HLayer<'w, T>>,
    },
}

/// Returns the layers' own host buffers to the pool.
fn give_layers<T: Real>(net: Vec<HLayer<'_, T>>) {
    for layer in net {
        match layer {
            HLayer::Linear { w, wt, b, .. } => {
                give_cow(w);
                give(wt);
                b.map(give_cow);
            }
            HLayer::Conv { w, wt, b, .. } => {
                give(w);
                give(wt);
                b.map(give_cow);
            }
            HLayer::Norm {
                mean,
                r,
                gamma,
                beta,
                ..
            } => {
                give(r);
                for v in [mean, gamma, beta] {
                    give_cow(v);
                }
            }
            HLayer::Residual { main, skip } => {
                give_layers(main);
                give_layers(skip);
            }
            HLayer::Act(_) | HLayer::MaxPool | HLayer::Flatten | HLayer::AvgPool => {}
        }
    }
}

/// One recorded layer application.
enum Rec<T> {
    Linear {
        x: Vec<T>,
        dx: Option<Vec<T>>,
        live_in: bool,
    },
    Conv {
        geom: Geom,
        /// `cols(x)` `[N·P, Q]` where kept (else empty: rebuilt from `x`, or not needed).
        cols: Vec<T>,
        /// The layer's input `[N, H, W, C]` where its patches were not kept but are needed (the
        /// kernel is selected); else empty.
        x: Vec<T>,
        /// `cols(ẋ_i)` `[k, N·P, Q]` where kept (else empty).
        dcols: Vec<T>,
        dx: Option<Vec<T>>,
        live_in: bool,
    },
    Norm {
        xhat: Vec<T>,
        dx: Option<Vec<T>>,
        live_in: bool,
        /// In training mode, `1/√(σ² + ε)` of the batch variance per channel (the batch mean
        /// and variance depend on the input: the adjoint has two more terms); `None` in
        /// evaluation mode.
        batch_r: Option<Vec<T>>,
    },
    Act {
        d1: Vec<T>,
        d2: Option<Vec<T>>,
        dz: Option<Vec<T>>,
    },
    MaxPool {
        /// 1 at each window's first maximum in row-major order (PyTorch's rule), else 0;
        /// `[N, H, W, C]`.
        mask: Vec<T>,
        shape: Shape,
    },
    Flatten {
        shape: Shape,
    },
    AvgPool {
        shape: Shape,
    },
}

impl<T: Real> Rec<T> {
    /// Returns the record's buffers to the pool (a forward pass that keeps no tape).
    fn give(self) {
        match self {
            Rec::Linear { x, dx, .. } => {
                give(x);
                give_opt(dx);
            }
            Rec::Norm {
                xhat, dx, batch_r, ..
            } => {
                give(xhat);
                give_opt(dx);
                give_opt(batch_r);
            }
            Rec::Conv {
                cols, x, dcols, dx, ..
            } => {
                give(cols);
                give(x);
                give(dcols);
                give_opt(dx);
            }
            Rec::Act { d1, d2, dz } => {
                give(d1);
                give_opt(d2);
                give_opt(dz);
            }
            Rec::MaxPool { mask, .. } => give(mask),
            Rec::Flatten { .. } | Rec::AvgPool { .. } => {}
        }
    }
}

enum Step<'l, T: Real> {
    One(&'l HLayer<'l, T>, Rec<T>),
    Block {
        main: Vec<Step<'l, T>>,
        skip: Vec<Step<'l, T>>,
        live_in: bool,
        /// Features per row at the block's input.
        feat: usize,
    },
}

/// The adjoints at a node's output: `g` `[N, feat]` and `ġ` `[k, N, feat]`; for the exact
/// diagonal, the curvature terms' factors at this node.
#[derive(Clone)]
struct Flow<T> {
    g: Option<Vec<T>>,
    dg: Option<Vec<T>>,
    factors: Vec<Factor<T>>,
}

/// A signed symmetric factor of a curvature term at a node's output (the candle sweep's
/// `Factor`): the term is `sign · Σ_n Σ_c S[c, n] S[c, n]ᵀ`.
#[derive(Clone)]
struct Factor<T> {
    /// Which factor this is, where a residual block's branches meet: the two copies of a factor
    /// that entered both branches add up; one met inside a branch is kept as it is.
    id: usize,
    sign: T,
    s: FactorData<T>,
}

/// A factor's values.
#[derive(Clone)]
enum FactorData<T> {
    /// `[C, N, feat]`, C-major like `ġ`.
    Dense { c: usize, s: Vec<T> },
    /// `S[c, n, j] = δ_cj m[n, j]` with `C` the features per row: `m` `[N, feat]`.
    OneHot(Vec<T>),
}

impl<T: Real> FactorData<T> {
    /// The dense form `(C, [C, N, feat])`, `feat` the features per row.
    fn into_dense(self, feat: usize) -> (usize, Vec<T>) {
        match self {
            FactorData::Dense { c, s } => (c, s),
            FactorData::OneHot(m) => {
                if m.is_empty() {
                    return (feat, m);
                }
                let mut s = zeros::<T>(feat * m.len());
                for (c, slab) in s.chunks_exact_mut(m.len()).enumerate() {
                    for (d, r) in slab.chunks_exact_mut(feat).zip(m.chunks_exact(feat)) {
                        d[c] = r[c];
                    }
                }
                give(m);
                (feat, s)
            }
        }
    }

    /// Returns the buffer to the pool.
    fn give(self) {
        match self {
            FactorData::Dense { s, .. } => give(s),
            FactorData::OneHot(m) => give(m),
        }
    }
}

/// Dense factors through a linear map `f` of rows (which takes `[B, feat]` for any `B`, here
/// `C·N`), one-hot ones materialised first (`feat` the features per row at the node).
fn map_factors<T: Real>(
    factors: Vec<Factor<T>>,
    feat: usize,
    f: impl Fn(&[T]) -> Vec<T>,
) -> Vec<Factor<T>> {
    factors
        .into_iter()
        .map(|x| {
            let (c, s) = x.s.into_dense(feat);
            let t = f(&s);
            give(s);
            Factor {
                s: FactorData::Dense { c, s: t },
                ..x
            }
        })
        .collect()
}

/// `Σ_factors sign · Σ_c S[c]²`, `[N, feat]` (`len` = `N·feat`), or `None` without factors.
fn signed_square_sums<'a, T: Real>(
    factors: impl IntoIterator<Item = &'a Factor<T>>,
    len: usize,
) -> Option<Vec<T>> {
    let mut factors = factors.into_iter().peekable();
    factors.peek()?;
    let mut a = zeros::<T>(len);
    for f in factors {
        let sg = f.sign;
        match &f.s {
            FactorData::Dense { s, .. } => {
                for slab in s.chunks_exact(len) {
                    for (x, &v) in a.iter_mut().zip(slab) {
                        *x += sg * v * v;
                    }
                }
            }
            FactorData::OneHot(m) => {
                for (x, &v) in a.iter_mut().zip(m) {
                    *x += sg * v * v;
                }
            }
        }
    }
    Some(a)
}

/// Fan-out: the factors of two branches, copies of one factor added (materialised where either
/// copy is dense).
fn merge_factors<T: Real>(a: Vec<Factor<T>>, b: Vec<Factor<T>>, feat: usize) -> Vec<Factor<T>> {
    let mut out = a;
    for y in b {
        let Some(i) = out.iter().position(|x| x.id == y.id) else {
            out.push(y);
            continue;
        };
        let x = out.swap_remove(i);
        let s = match (x.s, y.s) {
            (FactorData::OneHot(mut m), FactorData::OneHot(m2)) => {
                add_into(&mut m, &m2);
                give(m2);
                FactorData::OneHot(m)
            }
            (p, q) => {
                let (c, mut s) = p.into_dense(feat);
                let (_, t) = q.into_dense(feat);
                add_into(&mut s, &t);
                give(t);
                FactorData::Dense { c, s }
            }
        };
        out.push(Factor { s, ..x });
    }
    out
}

fn sum_opt<T: Real>(a: Option<Vec<T>>, b: Option<Vec<T>>) -> Option<Vec<T>> {
    match (a, b) {
        (Some(mut a), Some(b)) => {
            add_into(&mut a, &b);
            give(b);
            Some(a)
        }
        (a, b) => a.or(b),
    }
}

/// A forward pass's record, output value, output tangent and output row shape.
type Tape<'l, T> = (Vec<Step<'l, T>>, Vec<T>, Option<Vec<T>>, Shape);

struct Sweep<'a, T: Real> {
    product: Product,
    k: usize,
    /// Rows of the current batch, or of this sweep's block of it ([`sweep_batch`]).
    n: usize,
    /// Rows of the whole current batch (limits are on the batch, however it is split).
    batch_rows: usize,
    /// Per selected parameter: the `k` direction blocks `[k, len]` (kernels as rows).
    dirs: &'a [Option<Cow<'a, [T]>>],
    lens: &'a [usize],
    grad: Vec<Option<Vec<T>>>,
    prod: Vec<Option<Vec<T>>>,
    /// The exact diagonal per selected parameter ([`Product::Diagonal`]; kernels as rows).
    diag: Vec<Option<Vec<T>>>,
    /// Whether the diagonal includes the nonlinearities' residual terms (the Hessian's) or not
    /// (the Gauss–Newton matrix's).
    diag_residuals: bool,
    /// The last factor id handed out.
    last_id: usize,
    /// The error that stopped the backward pass (a residual factor over the limit).
    failed: Option<Error>,
    /// BatchNorm in training mode: batch statistics (only for the loss and the gradient; the
    /// batch is then swept whole, as its statistics are).
    batch_stats: bool,
    /// The batch statistics of every BatchNorm layer met, in the network's order (filled by the
    /// forward pass, which borrows the sweep shared).
    stats: std::sync::Mutex<Vec<super::BatchStats>>,
}

fn acc<T: Real>(slot: &mut Option<Vec<T>>, len: usize) -> &mut Vec<T> {
    slot.get_or_insert_with(|| zeros::<T>(len))
}

impl<'a, T: Real> Sweep<'a, T> {
    /// A sweep for `product` with `k` directions `dirs`, nothing accumulated yet.
    fn new(
        product: Product,
        k: usize,
        dirs: &'a [Option<Cow<'a, [T]>>],
        lens: &'a [usize],
        diag_residuals: bool,
    ) -> Self {
        let p = lens.len();
        Sweep {
            product,
            k,
            n: 0,
            batch_rows: 0,
            dirs,
            lens,
            grad: vec![None; p],
            prod: vec![None; p],
            diag: vec![None; p],
            diag_residuals,
            last_id: 0,
            failed: None,
            batch_stats: false,
            stats: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Another sweep of the same product and directions, nothing accumulated.
    fn fresh(&self) -> Self {
        Sweep::new(
            self.product,
            self.k,
            self.dirs,
            self.lens,
            self.diag_residuals,
        )
    }

    /// Adds `other`'s accumulated gradient, products and diagonal into this sweep's.
    fn absorb(&mut self, other: Self) {
        let pairs = [
            (&mut self.grad, other.grad),
            (&mut self.prod, other.prod),
            (&mut self.diag, other.diag),
        ];
        for (mine, theirs) in pairs {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a = sum_opt(a.take(), b);
            }
        }
    }
}

/// The loss's per-row inputs for one batch: targets `[N, O]`, soft targets' row masses, and the
/// rows' weights in the objective.
struct LossRows<T> {
    t: Vec<T>,
    mass: Option<Vec<T>>,
    weights: Vec<T>,
}

impl<T: Real> LossRows<T> {
    /// Returns the buffers to the pool.
    fn give(self) {
        give(self.t);
        give_opt(self.mass);
        give(self.weights);
    }
}

/// The logits' features per row, or the error of a network that does not end flat.
fn logits_width(shape: Shape) -> Result<usize> {
    match shape {
        Shape::Flat(o) => Ok(o),
        s => Err(shape_error("loss", 2, s)),
    }
}

/// One batch, `x` (`n` rows of `shape`), through the forward pass, the loss and the backward
/// pass, accumulated into `parts`. With rows enough, the batch is split into up to [`PARTS`]
/// blocks of rows, swept in parallel, each whole into its own part (parts are added up by the
/// caller, [`Sweep::absorb`]): no synchronisation inside the sweep, and the products that
/// reduce over rows (weight and kernel gradients, whose few output rows cannot be split) split
/// too. Otherwise the batch goes whole into `parts[0]`, its larger products and loops split over
/// the pool instead. `loss_rows(z, o)` gives the loss's inputs from the logits
/// `z` `[N, O]` of the whole batch.
fn sweep_batch<T: Real>(
    parts: &mut Vec<Sweep<'_, T>>,
    net: &[HLayer<'_, T>],
    x: Cow<'_, [T]>,
    shape: Shape,
    n: usize,
    kind: LossKind,
    loss_rows: impl FnOnce(&[T], usize) -> Result<LossRows<T>>,
) -> Result<()> {
    // Batch statistics are over the whole batch: no blocks of rows.
    let count = if parts[0].batch_stats {
        1
    } else {
        (n / MIN_PART_ROWS).clamp(1, PARTS)
    };
    if count == 1 {
        let s = &mut parts[0];
        s.n = n;
        s.batch_rows = n;
        let x = match x {
            Cow::Owned(x) => x,
            Cow::Borrowed(v) => {
                let mut x = dirty::<T>(v.len());
                x.copy_from_slice(v);
                x
            }
        };
        let mut live = false;
        let tape = s.layers(net, x, None, shape, &mut live)?;
        let o = logits_width(tape.3)?;
        let r = loss_rows(&tape.1, o)?;
        let failed = s.finish(tape, o, &r, (0, n), kind);
        r.give();
        return failed.map_or(Ok(()), Err);
    }
    while parts.len() < count {
        let part = parts[0].fresh();
        parts.push(part);
    }
    let feat = shape.len();
    // With no more threads than blocks each block's products stay on its thread; with more,
    // they split over the pool as well.
    let alone = threads() <= count;
    let bounds: Vec<(usize, usize)> = (0..count)
        .map(|i| (i * n / count, (i + 1) * n / count))
        .collect();
    let parallel = threads() > 1;
    let tapes = map_parts(
        parallel,
        parts[..count].iter_mut().zip(&bounds).collect(),
        |(s, &(a, b))| {
            serial_if(alone, || {
                s.n = b - a;
                s.batch_rows = n;
                let mut xs = dirty::<T>((b - a) * feat);
                xs.copy_from_slice(&x[a * feat..b * feat]);
                let mut live = false;
                s.layers(net, xs, None, shape, &mut live)
            })
        },
    );
    give_cow(x);
    let tapes = tapes.into_iter().collect::<Result<Vec<_>>>()?;
    let o = logits_width(tapes[0].3)?;
    let mut z = Vec::with_capacity(n * o);
    for tape in &tapes {
        z.extend_from_slice(&tape.1);
    }
    let r = loss_rows(&z, o)?;
    let failed = map_parts(
        parallel,
        parts[..count].iter_mut().zip(tapes).zip(&bounds).collect(),
        |((s, tape), &rows)| serial_if(alone, || s.finish(tape, o, &r, rows, kind)),
    );
    r.give();
    failed.into_iter().flatten().next().map_or(Ok(()), Err)
}

/// `f` over the blocks of a split batch: in parallel over the pool, or in order on the calling
/// thread (the same blocks, so the same numbers, without waking the pool).
fn map_parts<I: Send, R: Send>(
    parallel: bool,
    items: Vec<I>,
    f: impl Fn(I) -> R + Sync + Send,
) -> Vec<R> {
    if parallel {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

impl<T: Real> Sweep<'_, T> {
    /// The loss and the backward pass of this sweep's forward `tape` (`o` logits per row), its
    /// rows `a..b` of the batch's loss inputs `r`; the error that stopped it, if any.
    fn finish(
        &mut self,
        tape: Tape<'_, T>,
        o: usize,
        r: &LossRows<T>,
        (a, b): (usize, usize),
        kind: LossKind,
    ) -> Option<Error> {
        let (steps, z, dz, _) = tape;
        if !self.tape() {
            give(z);
            give_opt(dz);
            return None;
        }
        let mass = r.mass.as_ref().map(|m| &m[a..b]);
        let flow = self.loss(
            &z,
            dz.as_deref(),
            o,
            &r.t[a * o..b * o],
            mass,
            kind,
            &r.weights[a..b],
        );
        give(z);
        give_opt(dz);
        self.backward(steps, flow);
        self.failed.take()
    }
}

/// The sum of the parts' accumulators in the first part.
fn absorb_parts<'a, T: Real>(parts: Vec<Sweep<'a, T>>) -> Sweep<'a, T> {
    let mut parts = parts.into_iter();
    let mut first = parts.next().expect("a sweep has one part at least");
    for part in parts {
        first.absorb(part);
    }
    first
}

impl<T: Real> Sweep<'_, T> {
    /// The batch mean and `1/√(σ² + ε)` of the biased batch variance per channel of `x`
    /// (channels last, `c` of them), summed in f64; records the statistics for the running
    /// update ([`super::BatchStats`]).
    fn batch_statistics(&self, x: &[T], c: usize, eps: f64) -> (Vec<T>, Vec<T>) {
        let count = x.len() / c;
        let mut sum = vec![0f64; c];
        for row in x.chunks_exact(c) {
            for (s, v) in sum.iter_mut().zip(row) {
                *s += v.to_f64();
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / count as f64).collect();
        let mut sq = vec![0f64; c];
        for row in x.chunks_exact(c) {
            for ((s, v), m) in sq.iter_mut().zip(row).zip(&mean) {
                let d = v.to_f64() - m;
                *s += d * d;
            }
        }
        let var: Vec<f64> = sq.iter().map(|s| s / count as f64).collect();
        let mut m = dirty::<T>(c);
        let mut rb = dirty::<T>(c);
        for j in 0..c {
            m[j] = T::of(mean[j]);
            rb[j] = T::of(1.0 / (var[j] + eps).sqrt());
        }
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(super::BatchStats { mean, var, count });
        (m, rb)
    }

    /// The adjoint of BatchNorm in training mode, `y = γ x̂ + β` with `x̂ = (x − μ_B) r_B`: the
    /// parameters' gradients `Σ g x̂` and `Σ g`, and into the input
    /// `γ r_B (g − Σg/M − x̂ Σ(g x̂)/M)` over the `M` values of each channel.
    #[allow(clippy::too_many_arguments)]
    fn back_norm_batch(
        &mut self,
        gamma: &[T],
        g_slot: Option<usize>,
        b_slot: Option<usize>,
        xhat: Vec<T>,
        rb: Vec<T>,
        live_in: bool,
        flow: Flow<T>,
    ) -> Option<Flow<T>> {
        let c = gamma.len();
        let Some(g) = flow.g else {
            give(xhat);
            give(rb);
            return None;
        };
        let (mut sg, mut sgx) = (vec![T::ZERO; c], vec![T::ZERO; c]);
        for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
            for j in 0..c {
                sg[j] += gr[j];
                sgx[j] += gr[j] * xr[j];
            }
        }
        if let Some(a) = g_slot.and_then(|s| self.grad_acc(s)) {
            add_into(a, &sgx);
        }
        if let Some(a) = b_slot.and_then(|s| self.grad_acc(s)) {
            add_into(a, &sg);
        }
        let out = live_in.then(|| {
            let m = T::of((xhat.len() / c) as f64);
            let mut gx = g.clone();
            for (gr, xr) in gx.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
                for j in 0..c {
                    gr[j] = gamma[j] * rb[j] * (gr[j] - sg[j] / m - xr[j] * sgx[j] / m);
                }
            }
            Flow {
                g: Some(gx),
                dg: None,
                factors: Vec::new(),
            }
        });
        give(g);
        give(xhat);
        give(rb);
        out
    }

    fn residual(&self) -> bool {
        self.product == Product::Hessian
    }

    fn dir(&self, slot: Option<usize>) -> Option<&[T]> {
        slot.and_then(|s| self.dirs[s].as_deref())
    }

    /// The gradient accumulator of slot `s`, where the gradient is wanted (not beside
    /// products, whose callers discard it: it would cost one more product per layer).
    fn grad_acc(&mut self, s: usize) -> Option<&mut Vec<T>> {
        if self.product != Product::Gradient {
            return None;
        }
        let len = self.lens[s];
        Some(acc(&mut self.grad[s], len))
    }

    fn prod_acc(&mut self, s: usize) -> &mut Vec<T> {
        let len = self.lens[s] * self.k;
        acc(&mut self.prod[s], len)
    }

    fn diag_acc(&mut self, s: usize) -> &mut Vec<T> {
        let len = self.lens[s];
        acc(&mut self.diag[s], len)
    }

    /// Adds to a weight's diagonal `aᵀ (x²)` and to its bias's the column sums of `a`, where `a`
    /// `[rows, out]` is `Σ_factors sign · Σ_c S²` at the layer's output and `x` `[rows, inp]` the
    /// layer's input rows (a linear layer's inputs, a convolution's patches); `a` is returned to
    /// the pool.
    fn add_square_diag(
        &mut self,
        w_slot: Option<usize>,
        b_slot: Option<usize>,
        a: Vec<T>,
        x: &[T],
        out: usize,
        inp: usize,
    ) {
        let rows = a.len() / out;
        if let Some(s) = w_slot {
            let mut x2 = dirty::<T>(x.len());
            for (d, &v) in x2.iter_mut().zip(x) {
                *d = v * v;
            }
            mm(
                out,
                inp,
                rows,
                self.diag_acc(s),
                true,
                tr(&a, out),
                rm(&x2, inp),
            );
            give(x2);
        }
        if let Some(s) = b_slot {
            add_col_sums(self.diag_acc(s), &a, out);
        }
        give(a);
    }

    /// Whether this sweep carries the exact diagonal's factors.
    fn diagonal(&self) -> bool {
        self.product == Product::Diagonal
    }

    /// Whether the backward pass needs `g`: for the gradient, the Hessian's residual terms, and
    /// the Hessian diagonal's residual factors.
    fn wants_g(&self) -> bool {
        match self.product {
            Product::Gradient | Product::Hessian => true,
            Product::Loss | Product::GaussNewton => false,
            Product::Diagonal => self.diag_residuals,
        }
    }

    /// Whether the forward pass keeps its records for a backward pass (not for the loss alone).
    fn tape(&self) -> bool {
        self.product != Product::Loss
    }

    /// Whether activations record `φ''`.
    fn wants_second(&self) -> bool {
        self.residual() || (self.diagonal() && self.diag_residuals)
    }

    // ----- forward -----

    fn layers<'l>(
        &self,
        layers: &'l [HLayer<'l, T>],
        mut h: Vec<T>,
        mut dh: Option<Vec<T>>,
        mut shape: Shape,
        live: &mut bool,
    ) -> Result<Tape<'l, T>> {
        let (n, k) = (self.n, self.k);
        let mut steps = Vec::with_capacity(layers.len());
        for layer in layers {
            let (y, dy, out_shape, step) = match layer {
                HLayer::Linear {
                    wt,
                    b,
                    out,
                    inp,
                    w_slot,
                    b_slot,
                    ..
                } => {
                    let (out, inp) = (*out, *inp);
                    if shape.len() != inp {
                        return Err(shape_error("linear", inp, shape));
                    }
                    let mut y = dirty::<T>(n * out);
                    mm(n, out, inp, &mut y, false, rm(&h, inp), rm(wt, out));
                    if let Some(b) = b {
                        for row in y.chunks_exact_mut(out) {
                            add_into(row, b);
                        }
                    }
                    let vw = self.dir(*w_slot);
                    let vb = self.dir(*b_slot);
                    let mut dy = dh.as_ref().map(|d| {
                        let mut t = dirty::<T>(k * n * out);
                        mm(k * n, out, inp, &mut t, false, rm(d, inp), rm(wt, out));
                        t
                    });
                    if vw.is_some() || vb.is_some() {
                        let t = dy.get_or_insert_with(|| zeros::<T>(k * n * out));
                        for i in 0..k {
                            let ti = &mut t[i * n * out..(i + 1) * n * out];
                            if let Some(vw) = vw {
                                let vi = &vw[i * out * inp..(i + 1) * out * inp];
                                mm(n, out, inp, ti, true, rm(&h, inp), tr(vi, inp));
                            }
                            if let Some(vb) = vb {
                                for row in ti.chunks_exact_mut(out) {
                                    add_into(row, &vb[i * out..(i + 1) * out]);
                                }
                            }
                        }
                    }
                    let live_in = *live;
                    *live |= w_slot.is_some() || b_slot.is_some();
                    let rec = Rec::Linear {
                        x: h,
                        dx: dh,
                        live_in,
                    };
                    (y, dy, Shape::Flat(out), rec)
                }
                HLayer::Conv {
                    wt,
                    b,
                    out,
                    dims,
                    pad,
                    stride,
                    w_slot,
                    b_slot,
                    ..
                } => {
                    let Shape::Img { h: hh, w: ww, c } = shape else {
                        return Err(shape_error("conv2d", dims[1], shape));
                    };
                    if c != dims[1] || hh + 2 * pad < dims[2] || ww + 2 * pad < dims[3] {
                        return Err(shape_error("conv2d", dims[1], shape));
                    }
                    let geom = Geom {
                        c,
                        h: hh,
                        w: ww,
                        kh: dims[2],
                        kw: dims[3],
                        pad: *pad,
                        stride: *stride,
                        ho: (hh + 2 * pad - dims[2]) / stride + 1,
                        wo: (ww + 2 * pad - dims[3]) / stride + 1,
                    };
                    let out = *out;
                    let (q, rows) = (geom.patch(), n * geom.positions());
                    let mut cols = dirty::<T>(rows * q);
                    geom.im2col(&h, &mut cols);
                    let mut y = dirty::<T>(rows * out);
                    mm(rows, out, q, &mut y, false, rm(&cols, q), rm(wt, out));
                    if let Some(b) = b {
                        for row in y.chunks_exact_mut(out) {
                            add_into(row, b);
                        }
                    }
                    let vw = self.dir(*w_slot);
                    let vb = self.dir(*b_slot);
                    let mut dy: Option<Vec<T>> = None;
                    // The tangent's patches, kept for the kernel's residual term `gᵀ cols(ẋ)`
                    // when they fit (else rebuilt there).
                    let keep = dh.is_some()
                        && self.residual()
                        && w_slot.is_some()
                        && k * rows * q <= MAX_KEPT_PATCHES;
                    let mut kept = Vec::new();
                    if dh.is_some() || vw.is_some() || vb.is_some() {
                        let mut t = zeros::<T>(k * rows * out);
                        let mut dcols = if keep {
                            dirty::<T>(k * rows * q)
                        } else if dh.is_some() {
                            dirty::<T>(rows * q)
                        } else {
                            Vec::new()
                        };
                        let img = n * shape.len();
                        for i in 0..k {
                            let ti = &mut t[i * rows * out..(i + 1) * rows * out];
                            let mut accd = false;
                            if let Some(d) = &dh {
                                let di = if keep {
                                    &mut dcols[i * rows * q..(i + 1) * rows * q]
                                } else {
                                    &mut dcols[..]
                                };
                                geom.im2col(&d[i * img..(i + 1) * img], di);
                                mm(rows, out, q, ti, false, rm(di, q), rm(wt, out));
                                accd = true;
                            }
                            if let Some(vw) = vw {
                                let vi = &vw[i * out * q..(i + 1) * out * q];
                                mm(rows, out, q, ti, accd, rm(&cols, q), tr(vi, q));
                            }
                            if let Some(vb) = vb {
                                for row in ti.chunks_exact_mut(out) {
                                    add_into(row, &vb[i * out..(i + 1) * out]);
                                }
                            }
                        }
                        if keep {
                            kept = dcols;
                        } else {
                            give(dcols);
                        }
                        dy = Some(t);
                    }
                    let live_in = *live;
                    *live |= w_slot.is_some() || b_slot.is_some();
                    // Only the kernel's derivatives read the patches: kept where they are no
                    // larger than the input, else the input is kept and they are rebuilt in the
                    // backward pass (a 3×3 kernel's patches are 9 inputs each; kept for a whole
                    // ResNet they outgrew the buffer pool and were faulted in afresh every sweep).
                    let (cols, x) = match w_slot {
                        None => {
                            give(cols);
                            give(h);
                            (Vec::new(), Vec::new())
                        }
                        Some(_) if cols.len() <= h.len() => {
                            give(h);
                            (cols, Vec::new())
                        }
                        Some(_) => {
                            give(cols);
                            (Vec::new(), h)
                        }
                    };
                    let rec = Rec::Conv {
                        geom,
                        cols,
                        x,
                        dcols: kept,
                        dx: dh,
                        live_in,
                    };
                    let s = Shape::Img {
                        h: geom.ho,
                        w: geom.wo,
                        c: out,
                    };
                    (y, dy, s, rec)
                }
                HLayer::Norm {
                    mean,
                    r,
                    gamma,
                    beta,
                    eps,
                    g_slot,
                    b_slot,
                } => {
                    let c = shape.channels();
                    if c != mean.len() {
                        return Err(shape_error("batch_norm", mean.len(), shape));
                    }
                    let batch_r = if self.batch_stats {
                        if dh.is_some() || k > 0 {
                            return Err(Error::Unsupported {
                                method: "the host sweep".into(),
                                what: "BatchNorm in training mode for products along \
                                       directions (curvature is measured in evaluation mode)"
                                    .into(),
                            });
                        }
                        let (m, rb) = self.batch_statistics(&h, c, *eps);
                        Some((m, rb))
                    } else {
                        None
                    };
                    let (mean, r): (&[T], &[T]) = match &batch_r {
                        Some((m, rb)) => (m, rb),
                        None => (mean, r),
                    };
                    let mut xhat = h;
                    let mut y = dirty::<T>(xhat.len());
                    for (xr, yr) in xhat.chunks_exact_mut(c).zip(y.chunks_exact_mut(c)) {
                        for j in 0..c {
                            xr[j] = (xr[j] - mean[j]) * r[j];
                            yr[j] = gamma[j] * xr[j] + beta[j];
                        }
                    }
                    let vg = self.dir(*g_slot);
                    let vb = self.dir(*b_slot);
                    let mut dy = dh.as_ref().map(|d| {
                        let mut t = d.clone();
                        for row in t.chunks_exact_mut(c) {
                            for j in 0..c {
                                row[j] *= gamma[j] * r[j];
                            }
                        }
                        t
                    });
                    if vg.is_some() || vb.is_some() {
                        let t = dy.get_or_insert_with(|| zeros::<T>(k * xhat.len()));
                        for (i, ti) in t.chunks_exact_mut(xhat.len()).enumerate() {
                            for (tr_, xr) in ti.chunks_exact_mut(c).zip(xhat.chunks_exact(c)) {
                                for j in 0..c {
                                    if let Some(vg) = vg {
                                        tr_[j] += vg[i * c + j] * xr[j];
                                    }
                                    if let Some(vb) = vb {
                                        tr_[j] += vb[i * c + j];
                                    }
                                }
                            }
                        }
                    }
                    let live_in = *live;
                    *live |= g_slot.is_some() || b_slot.is_some();
                    let rec = Rec::Norm {
                        xhat,
                        dx: dh,
                        live_in,
                        batch_r: batch_r.map(|(m, rb)| {
                            give(m);
                            rb
                        }),
                    };
                    (y, dy, shape, rec)
                }
                HLayer::Act(a) => {
                    let second = self.wants_second();
                    let (y, d1, d2) = activate(*a, &h, second);
                    let dy = dh.as_ref().map(|d| {
                        let mut t = d.clone();
                        for ti in t.chunks_exact_mut(d1.len()) {
                            for (x, &s) in ti.iter_mut().zip(&d1) {
                                *x *= s;
                            }
                        }
                        t
                    });
                    give(h);
                    (y, dy, shape, Rec::Act { d1, d2, dz: dh })
                }
                HLayer::MaxPool => {
                    let Shape::Img { h: hh, w: ww, c } = shape else {
                        return Err(shape_error("max_pool2x2", 4, shape));
                    };
                    if hh % 2 != 0 || ww % 2 != 0 {
                        return Err(shape_error("max_pool2x2", 2, shape));
                    }
                    let (ho, wo) = (hh / 2, ww / 2);
                    let (img_in, img_out) = (hh * ww * c, ho * wo * c);
                    let mut y = dirty::<T>(n * img_out);
                    let mut mask = dirty::<T>(h.len());
                    let corners = |oi: usize, oj: usize| {
                        let p = (2 * oi * ww + 2 * oj) * c;
                        [p, p + c, p + ww * c, p + ww * c + c]
                    };
                    let fwd = |((x, y), m): ((&[T], &mut [T]), &mut [T])| {
                        let row = ww * c;
                        for oi in 0..ho {
                            let (top, bot) = x[2 * oi * row..(2 * oi + 2) * row].split_at(row);
                            let (mtop, mbot) =
                                m[2 * oi * row..(2 * oi + 2) * row].split_at_mut(row);
                            for oj in 0..wo {
                                let yo = &mut y[(oi * wo + oj) * c..][..c];
                                let s = 2 * oj * c;
                                let (a, b) = top[s..s + 2 * c].split_at(c);
                                let (d, e) = bot[s..s + 2 * c].split_at(c);
                                for ch in 0..c {
                                    let mut v = a[ch];
                                    for u in [b[ch], d[ch], e[ch]] {
                                        if u > v {
                                            v = u;
                                        }
                                    }
                                    yo[ch] = v;
                                }
                                let (ma, mb) = mtop[s..s + 2 * c].split_at_mut(c);
                                let (md, me) = mbot[s..s + 2 * c].split_at_mut(c);
                                // Every mask element is written: the windows tile the image.
                                // One winner per window, its first maximum in row-major order
                                // (PyTorch's rule; ties are common on flat image regions).
                                let one = |win: bool| if win { T::ONE } else { T::ZERO };
                                for ch in 0..c {
                                    let v = yo[ch];
                                    let wa = a[ch] == v;
                                    let wb = !wa && b[ch] == v;
                                    let wd = !(wa || wb) && d[ch] == v;
                                    ma[ch] = one(wa);
                                    mb[ch] = one(wb);
                                    md[ch] = one(wd);
                                    me[ch] = one(!(wa || wb || wd));
                                }
                            }
                        }
                    };
                    let par = h.len() >= PARALLEL_ELEMS && threads() > 1;
                    if par {
                        h.par_chunks(img_in)
                            .zip(y.par_chunks_mut(img_out))
                            .zip(mask.par_chunks_mut(img_in))
                            .for_each(fwd);
                    } else {
                        h.chunks(img_in)
                            .zip(y.chunks_mut(img_out))
                            .zip(mask.chunks_mut(img_in))
                            .for_each(fwd);
                    }
                    let out_shape = Shape::Img { h: ho, w: wo, c };
                    let dy = dh.as_ref().map(|d| {
                        let mut t = zeros::<T>(k * n * img_out);
                        let tan = |(b, (d, t)): (usize, (&[T], &mut [T]))| {
                            let m = &mask[(b % n) * img_in..][..img_in];
                            for oi in 0..ho {
                                for oj in 0..wo {
                                    let o = (oi * wo + oj) * c;
                                    let t = &mut t[o..o + c];
                                    for p in corners(oi, oj) {
                                        let dm = d[p..p + c].iter().zip(&m[p..p + c]);
                                        for (t, (&d, &m)) in t.iter_mut().zip(dm) {
                                            *t += d * m;
                                        }
                                    }
                                }
                            }
                        };
                        if par {
                            d.par_chunks(img_in)
                                .zip(t.par_chunks_mut(img_out))
                                .enumerate()
                                .for_each(tan);
                        } else {
                            d.chunks(img_in)
                                .zip(t.chunks_mut(img_out))
                                .enumerate()
                                .for_each(tan);
                        }
                        t
                    });
                    give(h);
                    give_opt(dh);
                    (y, dy, out_shape, Rec::MaxPool { mask, shape })
                }
                HLayer::Flatten => {
                    let f = shape.len();
                    let (y, dy) = match shape {
                        Shape::Img { h: hh, w: ww, c } if hh * ww > 1 && c > 1 => {
                            let perm = |src: &[T]| {
                                let mut out = dirty::<T>(src.len());
                                for (s, o) in src.chunks_exact(f).zip(out.chunks_exact_mut(f)) {
                                    for p in 0..hh * ww {
                                        for ch in 0..c {
                                            o[ch * hh * ww + p] = s[p * c + ch];
                                        }
                                    }
                                }
                                out
                            };
                            let out = (perm(&h), dh.as_deref().map(perm));
                            give(h);
                            give_opt(dh);
                            out
                        }
                        _ => (h, dh),
                    };
                    (y, dy, Shape::Flat(f), Rec::Flatten { shape })
                }
                HLayer::AvgPool => {
                    let Shape::Img { h: hh, w: ww, c } = shape else {
                        return Err(shape_error("global_avg_pool", 4, shape));
                    };
                    let area = T::of(1.0 / (hh * ww) as f64);
                    let pool = |src: &[T]| {
                        let rows = src.len() / (hh * ww * c);
                        let mut out = zeros::<T>(rows * c);
                        for (s, o) in src.chunks_exact(hh * ww * c).zip(out.chunks_exact_mut(c)) {
                            add_col_sums(o, s, c);
                            for x in o.iter_mut() {
                                *x *= area;
                            }
                        }
                        out
                    };
                    let y = pool(&h);
                    let dy = dh.as_deref().map(pool);
                    give(h);
                    give_opt(dh);
                    (y, dy, Shape::Flat(c), Rec::AvgPool { shape })
                }
                HLayer::Residual { main, skip } => {
                    let live_in = *live;
                    let mut live_main = live_in;
                    let (main_steps, mut a, da, sa) =
                        self.layers(main, h.clone(), dh.clone(), shape, &mut live_main)?;
                    let mut live_skip = live_in;
                    let (skip_steps, b, db, sb) =
                        self.layers(skip, h, dh, shape, &mut live_skip)?;
                    if sa != sb {
                        return Err(Error::Unsupported {
                            method: "the host sweep".into(),
                            what: format!("a residual block whose branches give {sa:?} and {sb:?}"),
                        });
                    }
                    *live = live_main || live_skip;
                    add_into(&mut a, &b);
                    give(b);
                    let step = Step::Block {
                        main: main_steps,
                        skip: skip_steps,
                        live_in,
                        feat: shape.len(),
                    };
                    if self.tape() {
                        steps.push(step);
                    }
                    h = a;
                    dh = sum_opt(da, db);
                    shape = sa;
                    continue;
                }
            };
            if self.tape() {
                steps.push(Step::One(layer, step));
            } else {
                step.give();
            }
            h = y;
            dh = dy;
            shape = out_shape;
        }
        Ok((steps, h, dh, shape))
    }

    // ----- loss -----

    /// The adjoints at the logits `z` `[N, O]` (tangent `dz`) of `Σ_r w_r ℓ_r`: `t` the target
    /// rows, `mass` the soft targets' per-row mass, `weights` the `w_r` (`1/rows` for a mean).
    #[allow(clippy::too_many_arguments)]
    fn loss(
        &self,
        z: &[T],
        dz: Option<&[T]>,
        o: usize,
        t: &[T],
        mass: Option<&[T]>,
        kind: LossKind,
        weights: &[T],
    ) -> Flow<T> {
        let (n, k) = (self.n, self.k);
        let want_g = self.wants_g();
        match kind {
            LossKind::Ce => {
                let mut p = zeros::<T>(n * o);
                for (zr, pr) in z.chunks_exact(o).zip(p.chunks_exact_mut(o)) {
                    let mut m = zr[0];
                    for &x in &zr[1..] {
                        if x > m {
                            m = x;
                        }
                    }
                    let mut s = T::ZERO;
                    for (x, y) in zr.iter().zip(pr.iter_mut()) {
                        *y = (*x - m).exp();
                        s += *y;
                    }
                    for y in pr.iter_mut() {
                        *y = *y / s;
                    }
                }
                let row_mass = |r: usize| mass.map_or(T::ONE, |m| m[r]);
                let g = want_g.then(|| {
                    let mut g = zeros::<T>(n * o);
                    for r in 0..n {
                        let m = row_mass(r);
                        for j in 0..o {
                            g[r * o + j] = (p[r * o + j] * m - t[r * o + j]) * weights[r];
                        }
                    }
                    g
                });
                let dg = dz.map(|dz| {
                    let mut out = zeros::<T>(k * n * o);
                    for i in 0..k {
                        for r in 0..n {
                            let base = (i * n + r) * o;
                            let (pr, dr) = (&p[r * o..(r + 1) * o], &dz[base..base + o]);
                            let mut s = T::ZERO;
                            for j in 0..o {
                                s += pr[j] * dr[j];
                            }
                            let wm = weights[r] * row_mass(r);
                            for j in 0..o {
                                out[base + j] = (pr[j] * dr[j] - s * pr[j]) * wm;
                            }
                        }
                    }
                    out
                });
                let mut factors = Vec::new();
                if self.diagonal() {
                    // S[c, n, j] = √(w m_n) √p_c (δ_cj − p_j): Σ_c S Sᵀ = w m (diag p − p pᵀ).
                    let mut s = dirty::<T>(o * n * o);
                    for (c, slab) in s.chunks_exact_mut(n * o).enumerate() {
                        for r in 0..n {
                            let pr = &p[r * o..(r + 1) * o];
                            let a = (weights[r] * row_mass(r) * pr[c]).sqrt();
                            let d = &mut slab[r * o..(r + 1) * o];
                            for j in 0..o {
                                d[j] = -(a * pr[j]);
                            }
                            d[c] += a;
                        }
                    }
                    factors.push(Factor {
                        id: 0,
                        sign: T::ONE,
                        s: FactorData::Dense { c: o, s },
                    });
                }
                give(p);
                Flow { g, dg, factors }
            }
            LossKind::Mse => {
                // Per row, ∂ℓ/∂z = (2/O)(z − t) and ∂²ℓ/∂z² = (2/O)·I, scaled by the row's weight.
                let two_o = T::of(2.0 / o as f64);
                let curv = |r: usize| weights[r] * two_o;
                let g = want_g.then(|| {
                    let mut g = dirty::<T>(n * o);
                    for (r, ((gr, zr), tr_)) in g
                        .chunks_exact_mut(o)
                        .zip(z.chunks_exact(o))
                        .zip(t.chunks_exact(o))
                        .enumerate()
                    {
                        let c = curv(r);
                        for j in 0..o {
                            gr[j] = (zr[j] - tr_[j]) * c;
                        }
                    }
                    g
                });
                let dg = dz.map(|d| {
                    let mut out = dirty::<T>(d.len());
                    for (b, (orow, drow)) in
                        out.chunks_exact_mut(o).zip(d.chunks_exact(o)).enumerate()
                    {
                        let c = curv(b % n);
                        for j in 0..o {
                            orow[j] = drow[j] * c;
                        }
                    }
                    out
                });
                let mut factors = Vec::new();
                if self.diagonal() {
                    // √(2 w_r/O) I per row, one-hot.
                    let mut m = dirty::<T>(n * o);
                    for (r, row) in m.chunks_exact_mut(o).enumerate() {
                        row.fill(curv(r).sqrt());
                    }
                    factors.push(Factor {
                        id: 0,
                        sign: T::ONE,
                        s: FactorData::OneHot(m),
                    });
                }
                Flow { g, dg, factors }
            }
        }
    }

    // ----- backward -----

    fn backward(&mut self, steps: Vec<Step<'_, T>>, mut flow: Flow<T>) -> Option<Flow<T>> {
        for step in steps.into_iter().rev() {
            let next = match step {
                Step::One(layer, rec) => self.back(layer, rec, flow),
                Step::Block {
                    main,
                    skip,
                    live_in,
                    feat,
                } => {
                    let from_main = self.backward(main, flow.clone());
                    let from_skip = if skip.is_empty() {
                        Some(flow)
                    } else {
                        self.backward(skip, flow)
                    };
                    if live_in {
                        match (from_main, from_skip) {
                            (Some(a), Some(b)) => Some(Flow {
                                g: sum_opt(a.g, b.g),
                                dg: sum_opt(a.dg, b.dg),
                                factors: merge_factors(a.factors, b.factors, feat),
                            }),
                            (a, b) => a.or(b),
                        }
                    } else {
                        None
                    }
                }
            };
            match next {
                Some(f) => flow = f,
                None => return None,
            }
        }
        Some(flow)
    }

    fn back(&mut self, layer: &HLayer<'_, T>, rec: Rec<T>, mut flow: Flow<T>) -> Option<Flow<T>> {
        let (n, k) = (self.n, self.k);
        let res = self.residual();
        match (layer, rec) {
            (
                HLayer::Linear {
                    w,
                    out,
                    inp,
                    w_slot,
                    b_slot,
                    ..
                },
                Rec::Linear { x, dx, live_in },
            ) => {
                let (out, inp) = (*out, *inp);
                if let Some(g) = &flow.g {
                    if let Some(a) = w_slot.and_then(|s| self.grad_acc(s)) {
                        mm(out, inp, n, a, true, tr(g, out), rm(&x, inp));
                    }
                    if let Some(a) = b_slot.and_then(|s| self.grad_acc(s)) {
                        add_col_sums(a, g, out);
                    }
                }
                if let Some(dg) = &flow.dg {
                    if let Some(s) = *w_slot {
                        let (g, dx) = (flow.g.as_deref(), dx.as_deref());
                        let pw = self.prod_acc(s);
                        for i in 0..k {
                            let pi = &mut pw[i * out * inp..(i + 1) * out * inp];
                            let dgi = &dg[i * n * out..(i + 1) * n * out];
                            mm(out, inp, n, pi, true, tr(dgi, out), rm(&x, inp));
                            if res && let (Some(g), Some(dx)) = (g, dx) {
                                let dxi = &dx[i * n * inp..(i + 1) * n * inp];
                                mm(out, inp, n, pi, true, tr(g, out), rm(dxi, inp));
                            }
                        }
                    }
                    if let Some(s) = *b_slot {
                        let pb = self.prod_acc(s);
                        for i in 0..k {
                            add_col_sums(
                                &mut pb[i * out..(i + 1) * out],
                                &dg[i * n * out..(i + 1) * n * out],
                                out,
                            );
                        }
                    }
                }
                // Σ_n Σ_c S[c,n,o]² x[n,j]² and Σ_n Σ_c S[c,n,o]², all factors in one product.
                if (w_slot.is_some() || b_slot.is_some())
                    && let Some(a) = signed_square_sums(&flow.factors, n * out)
                {
                    self.add_square_diag(*w_slot, *b_slot, a, &x, out, inp);
                }
                if !live_in {
                    return None;
                }
                let factors = std::mem::take(&mut flow.factors)
                    .into_iter()
                    .map(|f| {
                        let s = match f.s {
                            FactorData::Dense { c, s } => {
                                let mut t = dirty::<T>(c * n * inp);
                                mm(c * n, inp, out, &mut t, false, rm(&s, out), rm(w, inp));
                                give(s);
                                FactorData::Dense { c, s: t }
                            }
                            FactorData::OneHot(m) => {
                                // Column c of row n: m[n, c] W[c, :].
                                let mut t = dirty::<T>(out * n * inp);
                                chunks_mut(&mut t, inp, |b, d| {
                                    let (c, r) = (b / n, b % n);
                                    let v = m[r * out + c];
                                    for (x, &y) in d.iter_mut().zip(&w[c * inp..(c + 1) * inp]) {
                                        *x = v * y;
                                    }
                                });
                                give(m);
                                FactorData::Dense { c: out, s: t }
                            }
                        };
                        Factor { s, ..f }
                    })
                    .collect();
                let g_x = flow.g.as_ref().map(|g| {
                    let mut t = dirty::<T>(n * inp);
                    mm(n, inp, out, &mut t, false, rm(g, out), rm(w, inp));
                    t
                });
                let mut dg_x = flow.dg.as_ref().map(|dg| {
                    let mut t = dirty::<T>(k * n * inp);
                    mm(k * n, inp, out, &mut t, false, rm(dg, out), rm(w, inp));
                    t
                });
                if res && let (Some(g), Some(vw)) = (&flow.g, self.dir(*w_slot)) {
                    let t = dg_x.get_or_insert_with(|| zeros::<T>(k * n * inp));
                    for i in 0..k {
                        let vi = &vw[i * out * inp..(i + 1) * out * inp];
                        let ti = &mut t[i * n * inp..(i + 1) * n * inp];
                        mm(n, inp, out, ti, true, rm(g, out), rm(vi, inp));
                    }
                }
                give(x);
                give_opt(dx);
                give_flow(flow);
                Some(Flow {
                    g: g_x,
                    dg: dg_x,
                    factors,
                })
            }
            (
                HLayer::Conv {
                    w,
                    out,
                    w_slot,
                    b_slot,
                    ..
                },
                Rec::Conv {
                    geom,
                    cols,
                    x,
                    dcols: kept,
                    dx,
                    live_in,
                },
            ) => {
                let out = *out;
                let (q, rows) = (geom.patch(), n * geom.positions());
                let img = n * geom.h * geom.w * geom.c;
                let cols = if x.is_empty() {
                    cols
                } else {
                    let mut c = dirty::<T>(rows * q);
                    geom.im2col(&x, &mut c);
                    give(x);
                    c
                };
                if let Some(g) = &flow.g {
                    if let Some(a) = w_slot.and_then(|s| self.grad_acc(s)) {
                        mm(out, q, rows, a, true, tr(g, out), rm(&cols, q));
                    }
                    if let Some(a) = b_slot.and_then(|s| self.grad_acc(s)) {
                        add_col_sums(a, g, out);
                    }
                }
                if let Some(dg) = &flow.dg {
                    if let Some(s) = *w_slot {
                        let (g, dx) = (flow.g.as_deref(), dx.as_deref());
                        let mut dcols = if res && g.is_some() && dx.is_some() && kept.is_empty() {
                            dirty::<T>(rows * q)
                        } else {
                            Vec::new()
                        };
                        let pw = self.prod_acc(s);
                        for i in 0..k {
                            let pi = &mut pw[i * out * q..(i + 1) * out * q];
                            let dgi = &dg[i * rows * out..(i + 1) * rows * out];
                            mm(out, q, rows, pi, true, tr(dgi, out), rm(&cols, q));
                            if res && let (Some(g), Some(dx)) = (g, dx) {
                                let di = if kept.is_empty() {
                                    geom.im2col(&dx[i * img..(i + 1) * img], &mut dcols);
                                    &dcols[..]
                                } else {
                                    &kept[i * rows * q..(i + 1) * rows * q]
                                };
                                mm(out, q, rows, pi, true, tr(g, out), rm(di, q));
                            }
                        }
                    }
                    if let Some(s) = *b_slot {
                        let pb = self.prod_acc(s);
                        for i in 0..k {
                            add_col_sums(
                                &mut pb[i * out..(i + 1) * out],
                                &dg[i * rows * out..(i + 1) * rows * out],
                                out,
                            );
                        }
                    }
                }
                if !flow.factors.is_empty() && (w_slot.is_some() || b_slot.is_some()) {
                    let pos = geom.positions();
                    // One-hot factors: Σ_c S[c]² is m², and the kernel diagonal (m²)ᵀ cols².
                    let onehot = flow
                        .factors
                        .iter()
                        .filter(|f| matches!(f.s, FactorData::OneHot(_)));
                    if let Some(a) = signed_square_sums(onehot, rows * out) {
                        self.add_square_diag(*w_slot, *b_slot, a, &cols, out, q);
                    }
                    for f in &flow.factors {
                        let FactorData::Dense { c, s: sf } = &f.s else {
                            continue;
                        };
                        if let Some(s) = *w_slot {
                            let d = conv_kernel_diag(sf, &cols, c * n, n, pos, out, q, f.sign);
                            add_into(self.diag_acc(s), &d);
                        }
                        if let Some(s) = *b_slot {
                            // Σ_c Σ_n (Σ_p S[c,n,p,o])².
                            let acc = self.diag_acc(s);
                            let mut t = vec![T::ZERO; out];
                            for block in sf.chunks_exact(pos * out) {
                                t.fill(T::ZERO);
                                add_col_sums(&mut t, block, out);
                                for (a, &v) in acc.iter_mut().zip(&t) {
                                    *a += f.sign * v * v;
                                }
                            }
                        }
                    }
                }
                give(cols);
                give(kept);
                if !live_in {
                    return None;
                }
                let mut tmp = dirty::<T>(rows * q);
                let g_x = flow.g.as_ref().map(|g| {
                    mm(rows, q, out, &mut tmp, false, rm(g, out), rm(w, q));
                    let mut t = dirty::<T>(img);
                    geom.col2im(&tmp, &mut t);
                    t
                });
                let vw = if res { self.dir(*w_slot) } else { None };
                let dg_x = if flow.dg.is_some() || (vw.is_some() && flow.g.is_some()) {
                    let mut t = dirty::<T>(k * img);
                    for i in 0..k {
                        let mut accd = false;
                        if let Some(dg) = &flow.dg {
                            let dgi = &dg[i * rows * out..(i + 1) * rows * out];
                            mm(rows, q, out, &mut tmp, false, rm(dgi, out), rm(w, q));
                            accd = true;
                        }
                        if let (Some(g), Some(vw)) = (&flow.g, vw) {
                            let vi = &vw[i * out * q..(i + 1) * out * q];
                            mm(rows, q, out, &mut tmp, accd, rm(g, out), rm(vi, q));
                        }
                        geom.col2im(&tmp, &mut t[i * img..(i + 1) * img]);
                    }
                    Some(t)
                } else {
                    None
                };
                let feat_out = geom.positions() * out;
                let factors = std::mem::take(&mut flow.factors)
                    .into_iter()
                    .map(|f| {
                        let (c, t) = match f.s {
                            FactorData::Dense { c, s } => {
                                // Per column: col2im(S_c W), as ġ.
                                let mut t = dirty::<T>(c * img);
                                for ci in 0..c {
                                    let si = &s[ci * rows * out..(ci + 1) * rows * out];
                                    mm(rows, q, out, &mut tmp, false, rm(si, out), rm(w, q));
                                    geom.col2im(&tmp, &mut t[ci * img..(ci + 1) * img]);
                                }
                                give(s);
                                (c, t)
                            }
                            FactorData::OneHot(m) => {
                                (feat_out, onehot_conv_input(&m, &geom, w, n, out))
                            }
                        };
                        Factor {
                            s: FactorData::Dense { c, s: t },
                            ..f
                        }
                    })
                    .collect();
                give(tmp);
                give_opt(dx);
                give_flow(flow);
                Some(Flow {
                    g: g_x,
                    dg: dg_x,
                    factors,
                })
            }
            (
                HLayer::Norm {
                    r,
                    gamma,
                    g_slot,
                    b_slot,
                    ..
                },
                Rec::Norm {
                    xhat,
                    dx,
                    live_in,
                    batch_r,
                },
            ) => {
                let c = gamma.len();
                let len = xhat.len();
                if let Some(rb) = batch_r {
                    return self.back_norm_batch(gamma, *g_slot, *b_slot, xhat, rb, live_in, flow);
                }
                if let Some(g) = &flow.g {
                    if let Some(a) = g_slot.and_then(|s| self.grad_acc(s)) {
                        for (gr, xr) in g.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                            for j in 0..c {
                                a[j] += gr[j] * xr[j];
                            }
                        }
                    }
                    if let Some(a) = b_slot.and_then(|s| self.grad_acc(s)) {
                        add_col_sums(a, g, c);
                    }
                }
                if let Some(dg) = &flow.dg {
                    if let Some(s) = *g_slot {
                        let (g, dx) = (flow.g.as_deref(), dx.as_deref());
                        let pg = self.prod_acc(s);
                        for i in 0..k {
                            let pi = &mut pg[i * c..(i + 1) * c];
                            let dgi = &dg[i * len..(i + 1) * len];
                            for (dr, xr) in dgi.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                                for j in 0..c {
                                    pi[j] += dr[j] * xr[j];
                                }
                            }
                            if res && let (Some(g), Some(dx)) = (g, dx) {
                                let dxi = &dx[i * len..(i + 1) * len];
                                for (gr, dr) in g.chunks_exact(c).zip(dxi.chunks_exact(c)) {
                                    for j in 0..c {
                                        pi[j] += r[j] * gr[j] * dr[j];
                                    }
                                }
                            }
                        }
                    }
                    if let Some(s) = *b_slot {
                        let pb = self.prod_acc(s);
                        for i in 0..k {
                            add_col_sums(
                                &mut pb[i * c..(i + 1) * c],
                                &dg[i * len..(i + 1) * len],
                                c,
                            );
                        }
                    }
                }
                if !flow.factors.is_empty() && (g_slot.is_some() || b_slot.is_some()) {
                    // γ: Σ_c Σ_n (Σ_p S[c,n,p,ch] x̂[n,p,ch])², β: Σ_c Σ_n (Σ_p S[c,n,p,ch])².
                    let feat = len / n;
                    let (mut dgam, mut dbet) = (vec![T::ZERO; c], vec![T::ZERO; c]);
                    let (mut tg, mut tb) = (vec![T::ZERO; c], vec![T::ZERO; c]);
                    for f in &flow.factors {
                        let sg = f.sign;
                        match &f.s {
                            FactorData::OneHot(m) => {
                                for (mr, xr) in m.chunks_exact(c).zip(xhat.chunks_exact(c)) {
                                    for j in 0..c {
                                        let v = mr[j] * mr[j];
                                        dgam[j] += sg * v * xr[j] * xr[j];
                                        dbet[j] += sg * v;
                                    }
                                }
                            }
                            FactorData::Dense { s: sf, .. } => {
                                for (i, row) in sf.chunks_exact(feat).enumerate() {
                                    let xrow = &xhat[(i % n) * feat..][..feat];
                                    tg.fill(T::ZERO);
                                    tb.fill(T::ZERO);
                                    for (sr, xr) in row.chunks_exact(c).zip(xrow.chunks_exact(c)) {
                                        for j in 0..c {
                                            tg[j] += sr[j] * xr[j];
                                            tb[j] += sr[j];
                                        }
                                    }
                                    for j in 0..c {
                                        dgam[j] += sg * tg[j] * tg[j];
                                        dbet[j] += sg * tb[j] * tb[j];
                                    }
                                }
                            }
                        }
                    }
                    if let Some(s) = *g_slot {
                        add_into(self.diag_acc(s), &dgam);
                    }
                    if let Some(s) = *b_slot {
                        add_into(self.diag_acc(s), &dbet);
                    }
                }
                if !live_in {
                    return None;
                }
                let scale_rows = |mut t: Vec<T>| {
                    for row in t.chunks_exact_mut(c) {
                        for j in 0..c {
                            row[j] *= gamma[j] * r[j];
                        }
                    }
                    t
                };
                let factors = std::mem::take(&mut flow.factors)
                    .into_iter()
                    .map(|f| {
                        let s = match f.s {
                            FactorData::Dense { c, s } => FactorData::Dense {
                                c,
                                s: scale_rows(s),
                            },
                            FactorData::OneHot(m) => FactorData::OneHot(scale_rows(m)),
                        };
                        Factor { s, ..f }
                    })
                    .collect();
                let g_x = flow.g.clone().map(scale_rows);
                let mut dg_x = flow.dg.map(scale_rows);
                if res && let (Some(g), Some(vg)) = (&flow.g, self.dir(*g_slot)) {
                    let t = dg_x.get_or_insert_with(|| zeros::<T>(k * len));
                    for i in 0..k {
                        let ti = &mut t[i * len..(i + 1) * len];
                        for (tr_, gr) in ti.chunks_exact_mut(c).zip(g.chunks_exact(c)) {
                            for j in 0..c {
                                tr_[j] += r[j] * vg[i * c + j] * gr[j];
                            }
                        }
                    }
                }
                give(xhat);
                give_opt(dx);
                give_opt(flow.g);
                Some(Flow {
                    g: g_x,
                    dg: dg_x,
                    factors,
                })
            }
            (_, Rec::Act { d1, d2, dz }) => {
                let f = d1.len();
                let mut dg = flow.dg.map(|mut d| {
                    for di in d.chunks_exact_mut(f) {
                        for (x, &s) in di.iter_mut().zip(&d1) {
                            *x *= s;
                        }
                    }
                    d
                });
                if res && let (Some(g), Some(d2), Some(dz)) = (&flow.g, &d2, &dz) {
                    // φ'' g ż, per direction.
                    let t = dg.get_or_insert_with(|| zeros::<T>(k * f));
                    for (ti, zi) in t.chunks_exact_mut(f).zip(dz.chunks_exact(f)) {
                        for j in 0..f {
                            ti[j] += d2[j] * g[j] * zi[j];
                        }
                    }
                }
                let mut factors = flow.factors;
                for fac in &mut factors {
                    let s = match &mut fac.s {
                        FactorData::Dense { s, .. } => s,
                        FactorData::OneHot(m) => m,
                    };
                    for slab in s.chunks_exact_mut(f) {
                        for (x, &d) in slab.iter_mut().zip(&d1) {
                            *x *= d;
                        }
                    }
                }
                if self.diagonal()
                    && self.diag_residuals
                    && let (Some(g), Some(d2)) = (&flow.g, &d2)
                {
                    // diag(m), m = g ⊙ φ'', as diag(√m⁺) and −diag(√m⁻), one-hot.
                    if let Err(e) = check_residual_factor(self.batch_rows, f / n.max(1)) {
                        self.failed = Some(e);
                        return None;
                    }
                    let (mut pos, mut neg) = (dirty::<T>(f), dirty::<T>(f));
                    for j in 0..f {
                        let m = g[j] * d2[j];
                        (pos[j], neg[j]) = if m > T::ZERO {
                            (m.sqrt(), T::ZERO)
                        } else {
                            (T::ZERO, (-m).sqrt())
                        };
                    }
                    for (sign, part) in [(T::ONE, pos), (-T::ONE, neg)] {
                        if part.iter().all(|&v| v == T::ZERO) {
                            give(part);
                            continue;
                        }
                        self.last_id += 1;
                        factors.push(Factor {
                            id: self.last_id,
                            sign,
                            s: FactorData::OneHot(part),
                        });
                    }
                }
                let g = flow.g.map(|mut g| {
                    for (x, &s) in g.iter_mut().zip(&d1) {
                        *x *= s;
                    }
                    g
                });
                give(d1);
                give_opt(d2);
                give_opt(dz);
                Some(Flow { g, dg, factors })
            }
            (_, Rec::MaxPool { mask, shape }) => {
                let Shape::Img { h: hh, w: ww, c } = shape else {
                    unreachable!("max pool records an image shape")
                };
                let (ho, wo) = (hh / 2, ww / 2);
                let (img_in, img_out) = (hh * ww * c, ho * wo * c);
                let n_mask = mask.len() / img_in;
                let up = |src: &[T]| {
                    let mut out = dirty::<T>(src.len() / img_out * img_in);
                    let f = |(b, (s, o)): (usize, (&[T], &mut [T]))| {
                        let m = &mask[(b % n_mask) * img_in..][..img_in];
                        for i in 0..hh {
                            for j in 0..ww {
                                let d = (i * ww + j) * c;
                                let s = &s[((i / 2) * wo + j / 2) * c..][..c];
                                let o = o[d..d + c].iter_mut().zip(&m[d..d + c]);
                                for ((o, &m), &s) in o.zip(s) {
                                    *o = s * m;
                                }
                            }
                        }
                    };
                    if out.len() >= PARALLEL_ELEMS && threads() > 1 {
                        src.par_chunks(img_out)
                            .zip(out.par_chunks_mut(img_in))
                            .enumerate()
                            .for_each(f);
                    } else {
                        src.chunks(img_out)
                            .zip(out.chunks_mut(img_in))
                            .enumerate()
                            .for_each(f);
                    }
                    out
                };
                let factors = map_factors(std::mem::take(&mut flow.factors), img_out, up);
                let out = Flow {
                    g: flow.g.as_deref().map(up),
                    dg: flow.dg.as_deref().map(up),
                    factors,
                };
                give_flow(flow);
                give(mask);
                Some(out)
            }
            (_, Rec::Flatten { shape }) => {
                let Shape::Img { h: hh, w: ww, c } = shape else {
                    return Some(flow);
                };
                if hh * ww == 1 || c == 1 {
                    return Some(flow);
                }
                let f = shape.len();
                let unperm = |src: &[T]| {
                    let mut out = dirty::<T>(src.len());
                    for (s, o) in src.chunks_exact(f).zip(out.chunks_exact_mut(f)) {
                        for p in 0..hh * ww {
                            for ch in 0..c {
                                o[p * c + ch] = s[ch * hh * ww + p];
                            }
                        }
                    }
                    out
                };
                let factors = map_factors(std::mem::take(&mut flow.factors), f, unperm);
                let out = Flow {
                    g: flow.g.as_deref().map(unperm),
                    dg: flow.dg.as_deref().map(unperm),
                    factors,
                };
                give_flow(flow);
                Some(out)
            }
            (_, Rec::AvgPool { shape }) => {
                let Shape::Img { h: hh, w: ww, c } = shape else {
                    unreachable!("average pool records an image shape")
                };
                let area = T::of(1.0 / (hh * ww) as f64);
                let spread = |src: &[T]| {
                    let mut out = Vec::with_capacity(src.len() * hh * ww);
                    for row in src.chunks_exact(c) {
                        for _ in 0..hh * ww {
                            out.extend(row.iter().map(|&x| x * area));
                        }
                    }
                    out
                };
                let factors = map_factors(std::mem::take(&mut flow.factors), c, spread);
                let out = Flow {
                    g: flow.g.as_deref().map(spread),
                    dg: flow.dg.as_deref().map(spread),
                    factors,
                };
                give_flow(flow);
                Some(out)
            }
            _ => unreachable!("a record matches its layer"),
        }
    }
}

fn shape_error(layer: &str, want: usize, got: Shape) -> Error {
    Error::Unsupported {
        method: "the host sweep".into(),
        what: format!("a {layer} layer (size {want}) on rows shaped {got:?}"),
    }
}

/// `φ(z)`, `φ'(z)` and (if `second`) `φ''(z)`, by the formulas of the candle sweep
/// ([`super::common::derivatives`]); large buffers in parallel blocks.
fn activate<T: Real>(act: Activation, z: &[T], second: bool) -> (Vec<T>, Vec<T>, Option<Vec<T>>) {
    let n = z.len();
    let second = second && act != Activation::Relu;
    let mut a = dirty::<T>(n);
    let mut d1 = dirty::<T>(n);
    let mut d2 = dirty::<T>(if second { n } else { 0 });
    const BLOCK: usize = 1 << 14;
    if n >= PARALLEL_ELEMS && threads() > 1 {
        let blocks: Vec<(&[T], &mut [T], &mut [T])> = z
            .chunks(BLOCK)
            .zip(a.chunks_mut(BLOCK))
            .zip(d1.chunks_mut(BLOCK))
            .map(|((z, a), d)| (z, a, d))
            .collect();
        if second {
            blocks
                .into_par_iter()
                .zip(d2.par_chunks_mut(BLOCK))
                .for_each(|((z, a, d), e)| activate_block(act, z, a, d, Some(e)));
        } else {
            blocks
                .into_par_iter()
                .for_each(|(z, a, d)| activate_block(act, z, a, d, None));
        }
    } else {
        activate_block(act, z, &mut a, &mut d1, second.then_some(&mut d2[..]));
    }
    (a, d1, second.then_some(d2))
}

/// One block of [`activate`]: `a = φ(z)`, `d1 = φ'(z)` and, if given, `d2 = φ''(z)`.
fn activate_block<T: Real>(
    act: Activation,
    z: &[T],
    a: &mut [T],
    d1: &mut [T],
    d2: Option<&mut [T]>,
) {
    let (one, two, half) = (T::ONE, T::of(2.0), T::of(0.5));
    let sigmoid = |x: T| one / (one + (-x).exp());
    let relu = |x: T| if x > T::ZERO { x } else { T::ZERO };
    let inv_sqrt2 = T::of(std::f64::consts::FRAC_1_SQRT_2);
    let inv_sqrt_2pi = T::of(1.0 / (2.0 * std::f64::consts::PI).sqrt());
    // Each arm: (φ, φ', φ'') of one element.
    macro_rules! each {
        (|$x:ident| $body:expr) => {{
            match d2 {
                Some(d2) => {
                    for i in 0..z.len() {
                        let $x = z[i];
                        let (y, p1, p2) = $body;
                        a[i] = y;
                        d1[i] = p1;
                        d2[i] = p2;
                    }
                }
                None => {
                    for i in 0..z.len() {
                        let $x = z[i];
                        let (y, p1, _) = $body;
                        a[i] = y;
                        d1[i] = p1;
                    }
                }
            }
        }};
    }
    match act {
        Activation::Relu => each!(|x| (relu(x), if x >= T::ZERO { one } else { T::ZERO }, T::ZERO)),
        Activation::Tanh => each!(|x| {
            let t = x.tanh();
            let p1 = one - t * t;
            (t, p1, -(two * t * p1))
        }),
        Activation::Sigmoid => each!(|x| {
            let s = sigmoid(x);
            let p1 = s * (one - s);
            (s, p1, p1 * (one - two * s))
        }),
        Activation::Softplus => each!(|x| {
            let s = sigmoid(x);
            (relu(x) + ((-x.abs()).exp() + one).ln(), s, s * (one - s))
        }),
        Activation::Silu => each!(|x| {
            let s = sigmoid(x);
            let s1 = s * (one - s);
            (x * s, s + x * s1, s1 * (x * (one - two * s) + two))
        }),
        Activation::Gelu => each!(|x| {
            let e = (x * inv_sqrt2).erf();
            let cdf = e * half + half;
            let pdf = (x * x * -half).exp() * inv_sqrt_2pi;
            (x * half * (e + one), cdf + x * pdf, pdf * (two - x * x))
        }),
    }
}

/// The host sweep of `problem`, or `None` where it does not apply (a device other than the CPU,
/// a dtype other than f32/f64, inputs of another rank).
pub(super) fn try_run(
    problem: &Request<'_>,
    product: Product,
    dirs: &[Tensor],
) -> Result<Option<Output>> {
    let model = problem.model;
    if !model.device().is_cpu() {
        return Ok(None);
    }
    match model.dtype() {
        DType::F32 => run_typed::<f32>(problem, product, dirs),
        DType::F64 => run_typed::<f64>(problem, product, dirs),
        _ => Ok(None),
    }
}

/// A batch's inputs `x` on the host: `[N, feat]` (borrowed from `lock`, `x`'s, where it could be
/// taken), images channels-last (a copy).
fn host_input<'l, T: Real>(
    x: &Tensor,
    lock: Option<&'l Locked<'_>>,
) -> Result<Option<(Cow<'l, [T]>, Shape)>> {
    Ok(match x.dims() {
        [_, f] => Some((values_of(x, lock)?, Shape::Flat(*f))),
        [_, c, h, w] => {
            let x = x.permute((0, 2, 3, 1))?.contiguous()?;
            Some((
                Cow::Owned(T::host(&x)?),
                Shape::Img {
                    h: *h,
                    w: *w,
                    c: *c,
                },
            ))
        }
        _ => None,
    })
}

type Slots = HashMap<TensorId, usize>;

fn slot_of(slots: &Slots, v: &candle_core::Var) -> Option<usize> {
    slots.get(&v.as_tensor().id()).copied()
}

/// Read locks on every tensor of `layers` (weights, biases, BatchNorm's affine parameters and
/// running statistics) that is a contiguous CPU tensor, by id.
fn lock_layers<'m>(layers: &'m [Layer], locks: &mut Locks<'m>) {
    fn take<'m>(locks: &mut Locks<'m>, v: &'m candle_core::Var) {
        let t = v.as_tensor();
        if let Some(l) = Locked::new(t) {
            locks.insert(t.id(), l);
        }
    }
    for layer in layers {
        match layer {
            Layer::Linear(l) => {
                take(locks, &l.weight);
                if let Some(b) = &l.bias {
                    take(locks, b);
                }
            }
            Layer::Conv2d(c) => {
                take(locks, &c.weight);
                if let Some(b) = &c.bias {
                    take(locks, b);
                }
            }
            Layer::BatchNorm(b) => {
                for v in [&b.running_mean, &b.running_var, &b.weight, &b.bias] {
                    take(locks, v);
                }
            }
            Layer::Residual(r) => {
                lock_layers(&r.main, locks);
                lock_layers(&r.shortcut, locks);
            }
            Layer::Activation(_) | Layer::MaxPool2x2 | Layer::Flatten | Layer::GlobalAvgPool => {}
        }
    }
}

/// Read locks on tensors by id ([`lock_layers`]).
type Locks<'m> = HashMap<TensorId, Locked<'m>>;

/// The network's layers with their tensors on the host, borrowed from `locks` where they are
/// used as they are; `conv_dims[slot]` records the kernel shape of every selected convolution
/// weight (kept as rows during the sweep).
fn convert<'w, T: Real>(
    layers: &[Layer],
    slots: &Slots,
    conv_dims: &mut [Option<[usize; 4]>],
    locks: &'w Locks<'_>,
) -> Result<Vec<HLayer<'w, T>>> {
    let host = |v: &candle_core::Var| values_of::<T>(v.as_tensor(), locks.get(&v.as_tensor().id()));
    let mut out = Vec::with_capacity(layers.len());
    for layer in layers {
        out.push(match layer {
            Layer::Linear(l) => {
                let d = l.weight.dims();
                let w = host(&l.weight)?;
                HLayer::Linear {
                    wt: transpose(&w, d[0], d[1]),
                    w,
                    b: l.bias.as_ref().map(host).transpose()?,
                    out: d[0],
                    inp: d[1],
                    w_slot: slot_of(slots, &l.weight),
                    b_slot: l.bias.as_ref().and_then(|b| slot_of(slots, b)),
                }
            }
            Layer::Conv2d(c) => {
                let d = c.weight.dims();
                let dims = [d[0], d[1], d[2], d[3]];
                let w_slot = slot_of(slots, &c.weight);
                if let Some(s) = w_slot {
                    conv_dims[s] = Some(dims);
                }
                let w = host(&c.weight)?;
                let rows = kernel_rows(&w, &dims);
                give_cow(w);
                HLayer::Conv {
                    wt: transpose(&rows, d[0], d[1] * d[2] * d[3]),
                    w: rows,
                    b: c.bias.as_ref().map(host).transpose()?,
                    out: d[0],
                    dims,
                    pad: c.padding,
                    stride: c.stride,
                    w_slot,
                    b_slot: c.bias.as_ref().and_then(|b| slot_of(slots, b)),
                }
            }
            Layer::BatchNorm(b) => {
                let eps = T::of(b.eps);
                let var = host(&b.running_var)?;
                let r = var.iter().map(|&v| T::ONE / (v + eps).sqrt()).collect();
                give_cow(var);
                HLayer::Norm {
                    mean: host(&b.running_mean)?,
                    r,
                    gamma: host(&b.weight)?,
                    beta: host(&b.bias)?,
                    eps: b.eps,
                    g_slot: slot_of(slots, &b.weight),
                    b_slot: slot_of(slots, &b.bias),
                }
            }
            Layer::Activation(a) => HLayer::Act(*a),
            Layer::MaxPool2x2 => HLayer::MaxPool,
            Layer::Flatten => HLayer::Flatten,
            Layer::GlobalAvgPool => HLayer::AvgPool,
            Layer::Residual(r) => HLayer::Residual {
                main: convert(&r.main, slots, conv_dims, locks)?,
                skip: convert(&r.shortcut, slots, conv_dims, locks)?,
            },
        });
    }
    Ok(out)
}

fn run_typed<T: Real>(
    problem: &Request<'_>,
    product: Product,
    dirs: &[Tensor],
) -> Result<Option<Output>> {
    let model = problem.model;
    let k = if matches!(
        product,
        Product::Loss | Product::Gradient | Product::Diagonal
    ) {
        0
    } else {
        dirs.len()
    };
    let slots: Slots = problem
        .selected
        .iter()
        .enumerate()
        .map(|(j, &i)| (model.params()[i].var.as_tensor().id(), j))
        .collect();
    let p = problem.selected.len();
    let mut conv_dims = vec![None; p];
    let mut locks = Locks::new();
    lock_layers(&model.network().layers, &mut locks);
    let net = convert::<T>(&model.network().layers, &slots, &mut conv_dims, &locks)?;
    let lens: Vec<usize> = problem.shapes.iter().map(|s| s.iter().product()).collect();
    let offsets: Vec<usize> = lens
        .iter()
        .scan(0, |o, &l| {
            *o += l;
            Some(*o - l)
        })
        .collect();
    let dim: usize = lens.iter().sum();
    // The flat directions, each read in place where it can be (one copy otherwise).
    let dirs_t: Vec<Tensor> = dirs[..k]
        .iter()
        .map(|d| d.to_dtype(T::DTYPE))
        .collect::<candle_core::Result<_>>()?;
    let dir_locks: Vec<Option<Locked>> = dirs_t.iter().map(Locked::new).collect();
    let flat: Vec<Cow<[T]>> = dirs_t
        .iter()
        .zip(&dir_locks)
        .map(|(d, l)| values_of::<T>(d, l.as_ref()))
        .collect::<Result<_>>()?;
    if let Some(f) = flat.iter().find(|f| f.len() != dim) {
        return Err(Error::DimensionMismatch {
            context: "a direction of the hand-written sweep".into(),
            expected: dim,
            found: f.len(),
        });
    }
    let host_dirs: Vec<Option<Cow<[T]>>> = if k == 0 {
        vec![None; p]
    } else {
        (0..p)
            .map(|j| {
                let range = offsets[j]..offsets[j] + lens[j];
                Some(match (&conv_dims[j], &flat[..]) {
                    // One direction, used as it is: borrowed.
                    (None, [Cow::Borrowed(v)]) => Cow::Borrowed(&v[range]),
                    (Some(dims), _) => {
                        let mut v = dirty::<T>(k * lens[j]);
                        for (f, dst) in flat.iter().zip(v.chunks_exact_mut(lens[j])) {
                            let rows = kernel_rows(&f[range.clone()], dims);
                            dst.copy_from_slice(&rows);
                            give(rows);
                        }
                        Cow::Owned(v)
                    }
                    (None, _) => {
                        let mut v = dirty::<T>(k * lens[j]);
                        for (f, dst) in flat.iter().zip(v.chunks_exact_mut(lens[j])) {
                            dst.copy_from_slice(&f[range.clone()]);
                        }
                        Cow::Owned(v)
                    }
                })
            })
            .collect()
    };
    let mut parts = vec![Sweep::new(
        product,
        k,
        &host_dirs,
        &lens,
        problem.curvature == Curvature::Hessian,
    )];
    let weight = 1.0 / problem.rows as f64;
    let mut total = 0.0;
    for (bi, batch) in problem.batches.iter().enumerate() {
        let lock = Locked::new(&batch.x);
        let Some((x, shape)) = host_input::<T>(&batch.x, lock.as_ref())? else {
            return Ok(None);
        };
        let n = batch.len();
        sweep_batch(&mut parts, &net, x, shape, n, problem.loss, |z, o| {
            let (t, mass) = host_targets::<T>(&batch.y, n, o, problem.loss)?;
            let weights = vec![T::of(weight); n];
            let l = weighted_loss(z, o, &t, mass.as_deref(), problem.loss, &weights);
            if !l.is_finite() {
                return Err(Error::NonFiniteLoss {
                    context: "hand-written sweep".into(),
                    batch: bi,
                    value: l,
                });
            }
            total += l;
            Ok(LossRows { t, mass, weights })
        })?;
    }
    give_layers(net);
    let mut sweep = absorb_parts(parts);
    let to_tensor = |j: usize, v: Option<Vec<T>>| param_tensor(v, conv_dims[j], &problem.shapes[j]);
    // The gradient and each product written straight into one flat vector (kernels back from
    // rows).
    let layout = FlatLayout {
        offsets: &offsets,
        lens: &lens,
        conv_dims: &conv_dims,
    };
    let grad = if product != Product::Gradient {
        None
    } else {
        Some(layout.vector(|j| sweep.grad[j].as_deref())?)
    };
    for g in sweep.grad.drain(..) {
        give_opt(g);
    }
    let products = (0..k)
        .map(|i| {
            layout.vector(|j| {
                sweep.prod[j]
                    .as_deref()
                    .map(|a| &a[i * lens[j]..(i + 1) * lens[j]])
            })
        })
        .collect::<Result<_>>()?;
    for a in sweep.prod.drain(..) {
        give_opt(a);
    }
    let diagonal = if product == Product::Diagonal {
        (0..p)
            .map(|j| to_tensor(j, sweep.diag[j].take()))
            .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    drop(sweep);
    for d in host_dirs.into_iter().flatten() {
        give_cow(d);
    }
    Ok(Some(Output {
        loss: total,
        grad,
        products,
        diagonal,
    }))
}

/// Where each selected parameter lies in a flat parameter-space vector.
struct FlatLayout<'a> {
    offsets: &'a [usize],
    lens: &'a [usize],
    /// Kernel dimensions of the convolution weights (kept as rows in the sweep).
    conv_dims: &'a [Option<[usize; 4]>],
}

impl FlatLayout<'_> {
    /// One flat vector from per-parameter blocks, `block(j)` parameter `j`'s values (kernels as
    /// rows; `None`: zeros).
    fn vector<'b, T: Real>(&self, block: impl Fn(usize) -> Option<&'b [T]>) -> Result<Tensor> {
        let dim: usize = self.lens.iter().sum();
        let mut v = dirty::<T>(dim);
        for (j, (&off, &len)) in self.offsets.iter().zip(self.lens).enumerate() {
            let dst = &mut v[off..off + len];
            match (block(j), self.conv_dims[j]) {
                (Some(src), Some(dims)) => kernel_unrows_into(src, &dims, dst),
                (Some(src), None) => dst.copy_from_slice(src),
                (None, _) => dst.fill(T::ZERO),
            }
        }
        T::tensor(v, &[dim])
    }
}

/// A parameter-shaped tensor from a sweep accumulator (kernels kept as rows, `conv` their
/// dimensions), zeros where nothing was accumulated.
fn param_tensor<T: Real>(
    v: Option<Vec<T>>,
    conv: Option<[usize; 4]>,
    shape: &[usize],
) -> Result<Tensor> {
    let v = match (v, conv) {
        (Some(v), Some(dims)) => {
            let u = kernel_unrows(&v, &dims);
            give(v);
            u
        }
        (Some(v), None) => v,
        (None, _) => vec![T::ZERO; shape.iter().product()],
    };
    T::tensor(v, shape)
}

/// The target rows `[N, O]` of logits `z` on the host and, for soft targets, each row's mass.
type HostTargets<T> = (Vec<T>, Option<Vec<T>>);

/// The targets of `y` for `n` rows of `o` logits under `kind`, on the host, as
/// [`super::common::ce_targets`] and [`super::common::mse_targets`]
/// make them (class labels one-hot; soft targets with their
/// row masses for cross-entropy), without candle ops in the middle of a sweep. A label not below
/// `o` is an error naming it.
fn host_targets<T: Real>(
    y: &Targets,
    n: usize,
    o: usize,
    kind: LossKind,
) -> Result<HostTargets<T>> {
    let rows = |t: Vec<T>| -> Result<Vec<T>> {
        if t.len() != n * o {
            return Err(Error::config(
                "targets",
                format!("{} values", t.len()),
                format!("{n} rows of {o} outputs need {} target values", n * o),
            ));
        }
        Ok(t)
    };
    Ok(match (kind, y) {
        (_, Targets::Classes(l)) => {
            let labels = l.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
            if labels.len() != n {
                return Err(Error::config(
                    "targets",
                    format!("{} labels", labels.len()),
                    format!("the batch has {n} rows"),
                ));
            }
            let mut t = zeros::<T>(n * o);
            for (r, &c) in labels.iter().enumerate() {
                if c as usize >= o {
                    return Err(Error::config(
                        "targets",
                        format!("label {c} (row {r})"),
                        format!("the model has {o} outputs"),
                    ));
                }
                t[r * o + c as usize] = T::ONE;
            }
            (t, None)
        }
        (LossKind::Ce, Targets::Soft(q)) => {
            let t = rows(T::host(&q.to_dtype(T::DTYPE)?)?)?;
            let mass = t
                .chunks_exact(o)
                .map(|r| r.iter().fold(T::ZERO, |a, &v| a + v))
                .collect();
            (t, Some(mass))
        }
        (LossKind::Mse, Targets::Soft(t) | Targets::Values(t)) => {
            (rows(T::host(&t.to_dtype(T::DTYPE)?)?)?, None)
        }
        (LossKind::Ce, Targets::Values(_)) => return Err(ce_needs_labels()),
    })
}

/// `Σ_r w_r ℓ_r` in f64 for logits `z` `[N, O]` and host targets `t` (`mass` their row masses
/// for soft targets): cross-entropy `ℓ = m·logsumexp(z) − Σ_j t_j z_j` (`−log softmax` at the
/// label for one-hot rows), mean squared error `ℓ = (1/O) Σ_j (z_j − t_j)²`, as
/// [`crate::loss::per_sample`] defines them.
fn weighted_loss<T: Real>(
    z: &[T],
    o: usize,
    t: &[T],
    mass: Option<&[T]>,
    kind: LossKind,
    weights: &[T],
) -> f64 {
    let f = T::to_f64;
    let mut total = 0.0;
    for (r, (zr, tr_)) in z.chunks_exact(o).zip(t.chunks_exact(o)).enumerate() {
        let l = match kind {
            LossKind::Ce => {
                let m = zr.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f(v)));
                let lse = m + zr.iter().map(|&v| (f(v) - m).exp()).sum::<f64>().ln();
                let dot: f64 = zr.iter().zip(tr_).map(|(&a, &b)| f(a) * f(b)).sum();
                mass.map_or(1.0, |m| f(m[r])) * lse - dot
            }
            LossKind::Mse => {
                zr.iter()
                    .zip(tr_)
                    .map(|(&a, &b)| (f(a) - f(b)).powi(2))
                    .sum::<f64>()
                    / o as f64
            }
        };
        total += f(weights[r]) * l;
    }
    total
}

/// The network's outputs `[N, O]` for inputs `x` (as the data holds them), BatchNorm in
/// evaluation mode, by the host sweep's forward pass without a tape; `None` where it does not
/// apply (device, dtype, input rank).
pub(super) fn logits(model: &Model, x: &Tensor) -> Result<Option<Tensor>> {
    if !model.device().is_cpu() {
        return Ok(None);
    }
    match model.dtype() {
        DType::F32 => logits_typed::<f32>(model, x),
        DType::F64 => logits_typed::<f64>(model, x),
        _ => Ok(None),
    }
}

fn logits_typed<T: Real>(model: &Model, x: &Tensor) -> Result<Option<Tensor>> {
    let x = model.prepare_input(x)?;
    let n = x.dim(0)?;
    let lock = Locked::new(&x);
    let Some((x, shape)) = host_input::<T>(&x, lock.as_ref())? else {
        return Ok(None);
    };
    let mut locks = Locks::new();
    lock_layers(&model.network().layers, &mut locks);
    let net = convert::<T>(&model.network().layers, &Slots::new(), &mut [], &locks)?;
    let mut parts = vec![Sweep::new(Product::Loss, 0, &[], &[], false)];
    let mut logits = None;
    // The loss kind is not used: a sweep for the loss alone stops at the logits.
    sweep_batch(&mut parts, &net, x, shape, n, LossKind::Mse, |z, o| {
        logits = Some(T::tensor(z.to_vec(), &[n, o])?);
        Ok(LossRows {
            t: Vec::new(),
            mass: None,
            weights: Vec::new(),
        })
    })?;
    give_layers(net);
    Ok(logits)
}

/// The gradient of `Σ_r w_r ℓ_r` over one batch with respect to every parameter of `model` (in
/// [`Model::params`] order), `w = row_weights(logits)` ([`super::weighted_gradient`]). `None`
/// (before `row_weights` is called) off the CPU, for dtypes other than f32/f64, and for inputs
/// of another rank.
pub(super) fn weighted_gradient(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
    batch_stats: bool,
    row_weights: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Option<super::WeightedGradient>> {
    if !model.device().is_cpu() {
        return Ok(None);
    }
    match model.dtype() {
        DType::F32 => weighted_typed::<f32>(model, batch, loss, batch_stats, row_weights),
        DType::F64 => weighted_typed::<f64>(model, batch, loss, batch_stats, row_weights),
        _ => Ok(None),
    }
}

fn weighted_typed<T: Real>(
    model: &Model,
    batch: &Batch,
    loss: LossKind,
    batch_stats: bool,
    row_weights: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
) -> Result<Option<super::WeightedGradient>> {
    let x = model.prepare_input(&batch.x)?;
    let lock = Locked::new(&x);
    let Some((x, shape)) = host_input::<T>(&x, lock.as_ref())? else {
        return Ok(None);
    };
    let params = model.params();
    let p = params.len();
    let slots: Slots = params
        .iter()
        .enumerate()
        .map(|(j, v)| (v.var.as_tensor().id(), j))
        .collect();
    let mut conv_dims = vec![None; p];
    let mut locks = Locks::new();
    lock_layers(&model.network().layers, &mut locks);
    let net = convert::<T>(&model.network().layers, &slots, &mut conv_dims, &locks)?;
    let lens: Vec<usize> = params.iter().map(|v| v.var.elem_count()).collect();
    let no_dirs = vec![None; p];
    let n = batch.len();
    let mut sweep = Sweep::new(Product::Gradient, 0, &no_dirs, &lens, false);
    sweep.batch_stats = batch_stats;
    let mut parts = vec![sweep];
    sweep_batch(&mut parts, &net, x, shape, n, loss, |z, o| {
        let zt = T::tensor(z.to_vec(), &[n, o])?;
        let w = row_weights(&zt)?;
        if w.dims() != [n] {
            return Err(Error::RowWeights {
                reason: format!("row weights shaped {:?} for {n} rows", w.dims()),
            });
        }
        let weights = T::host(&w.to_dtype(T::DTYPE)?)?;
        let (t, mass) = host_targets::<T>(&batch.y, n, o, loss)?;
        Ok(LossRows { t, mass, weights })
    })?;
    give_layers(net);
    let mut sweep = absorb_parts(parts);
    let grads = params
        .iter()
        .enumerate()
        .map(|(j, v)| param_tensor(sweep.grad[j].take(), conv_dims[j], v.var.dims()))
        .collect::<Result<Vec<_>>>()?;
    let batch_norm = std::mem::take(
        sweep
            .stats
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    Ok(Some(super::WeightedGradient { grads, batch_norm }))
}
