//! Library part of the ckpt developer tasks (`cargo xtask …`), so integration tests can use them.

pub mod bench;
pub mod scenario;
