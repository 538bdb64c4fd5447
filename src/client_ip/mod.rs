//! The real client IP of a request, resolved from the sources you configure.
//!
//! (Module documentation is completed with the sources.)

mod detect;
mod explanation;
mod layer;
mod parse;
mod request;
mod service;
mod source;
mod trusted;
mod value;

#[cfg(feature = "axum")]
mod extract;

pub use detect::{Detection, Misconfiguration, Misconfigurations, MISCONFIG_TARGET};
pub use explanation::{Explanation, Step, Verdict};
#[cfg(feature = "axum")]
pub use extract::MissingClientIp;
pub use layer::{ClientIpLayer, OnUnresolved};
pub use request::{PeerAddr, RequestView};
pub use service::{ClientIpService, ResponseFuture};
pub use source::{Chain, TrustedHeader};
pub use source::{Forwarded, XForwardedFor};
pub use source::{Reason, Resolution, ResolveClientIp, SocketPeer};
#[cfg(feature = "signed")]
pub use source::{SignedHeader, Signer, SigningKey, SigningKeys};
pub use trusted::{TrustedRanges, CLOUDFLARE_RANGES_DATE};
pub use value::{ClientIp, SourceKind};
