//! Find the real client IP behind proxies — without letting a client lie about it — and
//! rate-limit on it with GCRA.
//!
//! The crate docs are completed as the modules land; see [`client_ip`].
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client_ip;
mod error;
pub mod rate_limit;
pub mod store;

pub use client_ip::{ClientIp, ClientIpLayer, ClientIpService};
pub use error::ConfigError;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
