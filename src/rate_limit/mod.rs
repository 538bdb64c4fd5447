//! Rate limiting with GCRA: the [`Quota`] a key may spend.
//!
//! (Module documentation is completed with the layer.)

mod quota;

pub use quota::Quota;
