//! Convolutions as matrix products (im2col): the hand-written sweeps' convolution forward,
//! input-adjoint and kernel-gradient maps, each one large matrix product instead of candle's
//! convolution kernels (whose transposed convolution and kernel gradient are slow on the CPU).
//!
//! With `P = H'·W'` output positions and `Q = C·kh·kw` kernel entries per output channel, `cols(x)`
//! is `[B·P, Q]` (row `(b, i, j)` holds the input patch under output position `(i, j)`, in
//! `[kh, kw, C]` order, channels innermost; [`Geom::kernel_rows`] puts kernels in the same order),
//! so `y = cols(x) Wᵀ`, the kernel gradient is `gᵀ cols(x)` and the
//! input adjoint is `col2im(g W)`, `col2im` being the adjoint of `cols` (a scatter-add of patches).
//! Built from padding, narrowing and stacking, so it runs on every device.

use candle_core::Tensor;

use crate::Result;

/// The geometry of one convolution on one input size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geom {
    /// Input channels.
    pub c: usize,
    /// Kernel height and width.
    pub kh: usize,
    pub kw: usize,
    pub pad: usize,
    pub stride: usize,
    /// Input height and width.
    pub h: usize,
    pub w: usize,
    /// Output height and width.
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    /// The geometry of a `[out, c, kh, kw]` kernel with `pad` and `stride` on `[.., c, h, w]`.
    pub fn new(kernel: &[usize], input: &[usize], pad: usize, stride: usize) -> Geom {
        let (c, kh, kw) = (kernel[1], kernel[2], kernel[3]);
        let (h, w) = (input[input.len() - 2], input[input.len() - 1]);
        let ho = (h + 2 * pad - kh) / stride + 1;
        let wo = (w + 2 * pad - kw) / stride + 1;
        Geom {
            c,
            kh,
            kw,
            pad,
            stride,
            h,
            w,
            ho,
            wo,
        }
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// Kernel entries per output channel.
    pub fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Every `stride`-th of the first `n·stride` entries along `dim` (of a tensor holding at least
    /// `(n − 1)·stride + 1` there).
    fn subsample(&self, t: &Tensor, dim: usize, n: usize) -> Result<Tensor> {
        let s = self.stride;
        if s == 1 {
            return Ok(t.narrow(dim, 0, n)?);
        }
        let len = t.dim(dim)?;
        let t = if len < n * s {
            t.pad_with_zeros(dim, 0, n * s - len)?
        } else {
            t.narrow(dim, 0, n * s)?
        };
        let mut shape = t.dims().to_vec();
        shape[dim] = n;
        shape.insert(dim + 1, s);
        Ok(t.reshape(shape)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)?)
    }

    /// The adjoint of [`Geom::subsample`]: `n` entries along `dim` spread `stride` apart, zeros
    /// between, `len` entries in all.
    fn upsample(&self, t: &Tensor, dim: usize, len: usize) -> Result<Tensor> {
        let s = self.stride;
        if s == 1 {
            return Ok(t.clone());
        }
        let n = t.dim(dim)?;
        let t = t.unsqueeze(dim + 1)?.pad_with_zeros(dim + 1, 0, s - 1)?;
        let mut shape = t.dims().to_vec();
        shape.remove(dim + 1);
        shape[dim] = n * s;
        Ok(t.reshape(shape)?.narrow(dim, 0, len)?)
    }

    /// `[B, C, H, W]` -> `[B·P, Q]`, each row in `[kh, kw, C]` order (channels innermost: one
    /// channels-last copy of the input, then contiguous runs per kernel offset).
    pub fn im2col(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let p = self.pad;
        let xp = if p > 0 {
            x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?
        } else {
            x.clone()
        };
        // [B, Hp, Wp, C].
        let xp = xp.permute((0, 2, 3, 1))?.contiguous()?;
        let (lh, lw) = (
            (self.ho - 1) * self.stride + 1,
            (self.wo - 1) * self.stride + 1,
        );
        let mut slices = Vec::with_capacity(self.kh * self.kw);
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                let s = xp.narrow(1, ki, lh)?.narrow(2, kj, lw)?;
                let s = self.subsample(&s, 1, self.ho)?;
                slices.push(self.subsample(&s, 2, self.wo)?);
            }
        }
        // [B, H', W', kh·kw, C].
        let t = Tensor::stack(&slices, 3)?;
        Ok(t.reshape((b * self.positions(), self.patch()))?)
    }

    /// The adjoint of [`Geom::im2col`]: `[B·P, Q]` -> `[B, C, H, W]`.
    pub fn col2im(&self, cols: &Tensor, b: usize) -> Result<Tensor> {
        let k2 = self.kh * self.kw;
        let t = cols.reshape((b, self.ho, self.wo, k2, self.c))?;
        let p = self.pad;
        let (hp, wp) = (self.h + 2 * p, self.w + 2 * p);
        let (lh, lw) = (
            (self.ho - 1) * self.stride + 1,
            (self.wo - 1) * self.stride + 1,
        );
        let mut acc: Option<Tensor> = None;
        for ki in 0..self.kh {
            for kj in 0..self.kw {
                let s = t.narrow(3, ki * self.kw + kj, 1)?.squeeze(3)?;
                let s = self.upsample(&s, 1, lh)?;
                let s = self.upsample(&s, 2, lw)?;
                let s =
                    s.pad_with_zeros(1, ki, hp - ki - lh)?
                        .pad_with_zeros(2, kj, wp - kj - lw)?;
                acc = Some(match acc {
                    Some(a) => a.add(&s)?,
                    None => s,
                });
            }
        }
        let acc = acc.expect("a kernel has at least one entry");
        let acc = if p > 0 {
            acc.narrow(1, p, self.h)?.narrow(2, p, self.w)?
        } else {
            acc
        };
        Ok(acc.permute((0, 3, 1, 2))?.contiguous()?)
    }

    /// Kernels `[lead..., out, C, kh, kw]` as rows in the patch order of [`Geom::im2col`]:
    /// `[lead..., out, Q]`.
    pub fn kernel_rows(&self, w: &Tensor) -> Result<Tensor> {
        let r = w.rank();
        let mut perm: Vec<usize> = (0..r - 3).collect();
        perm.extend([r - 2, r - 1, r - 3]);
        let mut shape = w.dims()[..r - 3].to_vec();
        shape.push(self.patch());
        Ok(w.permute(perm)?.contiguous()?.reshape(shape)?)
    }

    /// The inverse of [`Geom::kernel_rows`]: `[lead..., out, Q]` -> `[lead..., out, C, kh, kw]`.
    pub fn kernel_unrows(&self, m: &Tensor) -> Result<Tensor> {
        let r = m.rank();
        let mut shape = m.dims()[..r - 1].to_vec();
        shape.extend([self.kh, self.kw, self.c]);
        let rr = shape.len();
        let mut perm: Vec<usize> = (0..rr - 3).collect();
        perm.extend([rr - 1, rr - 3, rr - 2]);
        Ok(m.reshape(shape)?.permute(perm)?.contiguous()?)
    }

    /// `[B, out, H', W']` -> `[B·P, out]`.
    pub fn rows_of(&self, y: &Tensor) -> Result<Tensor> {
        let (b, out) = (y.dim(0)?, y.dim(1)?);
        Ok(y.permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((b * self.positions(), out))?)
    }

    /// `[B·P, out]` -> `[B, out, H', W']` (the forward pass uses candle's convolution; the tests
    /// check the product form against it).
    #[cfg(test)]
    pub fn unrows(&self, m: &Tensor, b: usize) -> Result<Tensor> {
        let out = m.dim(1)?;
        Ok(m.reshape((b, self.ho, self.wo, out))?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    /// Against candle's own convolution, and `col2im` as the adjoint of `im2col`
    /// (`⟨cols(x), c⟩ = ⟨x, col2im(c)⟩`), for strides 1 and 2, with and without padding, on even
    /// and odd sizes.
    #[test]
    fn im2col_products_equal_candle_convolutions_and_col2im_is_the_adjoint() {
        let dev = Device::Cpu;
        for (pad, stride, h, k) in [
            (1, 1, 6, 3),
            (0, 1, 5, 3),
            (1, 2, 7, 3),
            (0, 2, 6, 1),
            (1, 2, 8, 3),
        ] {
            let x = crate::rng::normal_tensor(&[2, 3, h, h + 1], 1, DType::F64, &dev).unwrap();
            let w = crate::rng::normal_tensor(&[4, 3, k, k], 2, DType::F64, &dev).unwrap();
            let g = Geom::new(w.dims(), x.dims(), pad, stride);
            let cols = g.im2col(&x).unwrap();
            let y = g
                .unrows(
                    &cols
                        .matmul(&g.kernel_rows(&w).unwrap().t().unwrap())
                        .unwrap(),
                    2,
                )
                .unwrap();
            let want = x.conv2d(&w, pad, stride, 1, 1).unwrap();
            assert_eq!(y.dims(), want.dims());
            let err = y
                .sub(&want)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(err < 1e-12, "pad {pad} stride {stride}: {err}");
            let c = crate::rng::normal_tensor(cols.dims(), 3, DType::F64, &dev).unwrap();
            let lhs = cols
                .mul(&c)
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let rhs = x
                .mul(&g.col2im(&c, 2).unwrap())
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            assert!(
                (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
                "adjoint: {lhs} vs {rhs}"
            );
        }
    }
}
