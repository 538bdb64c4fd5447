use std::convert::Infallible;
use std::fmt;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{header, HeaderValue, StatusCode};

use super::ClientIp;

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = MissingClientIp;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ClientIp>()
            .copied()
            .ok_or(MissingClientIp { _private: () })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ClientIp>().copied())
    }
}

/// The rejection of the [`ClientIp`] extractor: the request went through no
/// [`ClientIpLayer`](super::ClientIpLayer).
///
/// That is a server misconfiguration, so it answers `500 Internal Server Error` with a body
/// that names the missing layer.
pub struct MissingClientIp {
    _private: (),
}

impl MissingClientIp {
    const MESSAGE: &'static str =
        "missing `ClientIp` request extension: add `tower_bouncer::ClientIpLayer` in front of this route";
}

impl fmt::Debug for MissingClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MissingClientIp").finish()
    }
}

impl fmt::Display for MissingClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MESSAGE)
    }
}

impl std::error::Error for MissingClientIp {}

impl IntoResponse for MissingClientIp {
    fn into_response(self) -> Response {
        let mut response = Self::MESSAGE.into_response();
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}
