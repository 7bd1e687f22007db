//! The binaries' start-up (`terrain_cli::startup::start`) sets what candle and rayon use. In its
//! own test binary (so its own process): it writes `RAYON_NUM_THREADS`, `CANDLE_NUM_THREADS` and
//! the second-order flag and builds rayon's global pool, all process-wide and once. One test
//! function, so the steps run in order.

use candle_core::{Device, Tensor};
use terrain_cli::startup::{Threads, start};
use terrain_model::threads::{self, ThreadSource, ThreadsError};

#[test]
fn start_sets_candles_and_rayons_thread_count_once() {
    assert_eq!(start(Threads::Sized(Some(0))), Err(ThreadsError::Zero));

    let plan = start(Threads::Sized(Some(3))).unwrap().unwrap();
    assert_eq!(plan.threads, 3);
    assert_eq!(plan.source, ThreadSource::Requested);
    assert!(plan.limits.usable() >= 1);
    assert_eq!(std::env::var(threads::RAYON_ENV).as_deref(), Ok("3"));
    assert_eq!(std::env::var(threads::CANDLE_ENV).as_deref(), Ok("3"));
    assert_eq!(
        std::env::var(terrain_model::autodiff::FLAG).as_deref(),
        Ok("1")
    );
    assert_eq!(candle_core::utils::get_num_threads(), 3);
    assert_eq!(threads::pool_threads(), 3);

    // Same count again: the same plan. Another count: the pool is already built.
    assert_eq!(start(Threads::Sized(Some(3))).unwrap(), Some(plan));
    let e = start(Threads::Sized(Some(2))).unwrap_err();
    assert_eq!(
        e,
        ThreadsError::AlreadyBuilt {
            requested: 2,
            built: 3
        }
    );
    assert!(e.to_string().contains("already built"), "{e}");
    assert_eq!(candle_core::utils::get_num_threads(), 3);
    assert_eq!(start(Threads::CandleDefaults).unwrap(), None);

    // candle works on the configured pools: a matmul big enough for gemm to go parallel, and
    // an elementwise op big enough (>= 64Ki elements) for candle's barrier pool.
    let a = Tensor::ones((256, 256), candle_core::DType::F32, &Device::Cpu).unwrap();
    let s = (a.matmul(&a).unwrap() + 1.0).unwrap().sum_all().unwrap();
    assert_eq!(s.to_scalar::<f32>().unwrap(), 256.0f32.powi(3) + 65536.0);
    assert_eq!(threads::pool_threads(), 3);
}
