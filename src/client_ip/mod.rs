//! The real client IP of a request, resolved from the sources you configure.
//!
//! (Module documentation is completed with the sources.)

mod layer;
mod request;
mod service;
mod source;
mod value;

#[cfg(feature = "axum")]
mod extract;

#[cfg(feature = "axum")]
pub use extract::MissingClientIp;
pub use layer::{ClientIpLayer, OnUnresolved};
pub use request::{PeerAddr, RequestView};
pub use service::{ClientIpService, ResponseFuture};
pub use source::{Reason, Resolution, ResolveClientIp, SocketPeer};
pub use value::{ClientIp, SourceKind};
