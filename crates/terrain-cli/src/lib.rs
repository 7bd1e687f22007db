//! What terrain's two binaries share: the `terrain` command (`src/main.rs`) and `cargo xtask`
//! both start through [`startup::start`]. Not a library of terrain: it owns process-wide state
//! (environment variables, the allocator, rayon's global pool), which the libraries never touch.
#![warn(missing_docs)]

pub mod startup;
