//! [`RouteCosts`]: what each route costs, as configuration (feature `axum`).

use std::borrow::Cow;
use std::fmt;

use crate::client_ip::RequestView;
use crate::ConfigError;

/// A table of costs per route — the route the Axum router matched (`MatchedPath`, such as
/// `/export` or `/users/{id}/report`), never the raw path the client sent — with a default
/// for every other route. Given to
/// [`RateLimitLayerBuilder::route_costs`](super::RateLimitLayerBuilder::route_costs); every
/// cost is checked against the bursts when the layer is built.
///
/// The router sets `MatchedPath` for layers added with `Router::layer` or
/// `Router::route_layer`; a layer wrapped around the whole router from outside sees no
/// matched path, and every request there costs the default.
///
/// ```
/// use axum::{routing::get, Router};
/// use tower::ServiceBuilder;
/// use tower_bouncer::client_ip::{ClientIpLayer, SocketPeer};
/// use tower_bouncer::rate_limit::{RateLimitLayer, RouteCosts};
///
/// // `/export` costs 10 cells of the quota, everything else 1.
/// let limit = RateLimitLayer::builder("100/min".parse()?)
///     .route_costs(RouteCosts::new().route("/export", 10))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "list" }))
///     .route("/export", get(|| async { "a big pdf" }))
///     .layer(limit)
///     .layer(ClientIpLayer::new(SocketPeer::new()));
/// # let _ = app;
/// # Ok::<(), tower_bouncer::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RouteCosts {
    default: u32,
    routes: Vec<(Cow<'static, str>, u32)>,
}

impl RouteCosts {
    /// Every route costs 1 until told otherwise.
    pub fn new() -> Self {
        Self {
            default: 1,
            routes: Vec::new(),
        }
    }

    /// Requests matched to the route `template` (as written in `Router::route`, e.g.
    /// `/users/{id}/export`) cost `cost` cells. A route given twice keeps the last cost.
    #[must_use]
    pub fn route(mut self, template: impl Into<Cow<'static, str>>, cost: u32) -> Self {
        let template = template.into();
        match self.routes.iter_mut().find(|(known, _)| *known == template) {
            Some(entry) => entry.1 = cost,
            None => self.routes.push((template, cost)),
        }
        self
    }

    /// What every other route costs (1 by default).
    #[must_use]
    pub fn default_cost(mut self, cost: u32) -> Self {
        self.default = cost;
        self
    }

    /// The cost of a request: its matched route's, else the default.
    pub fn cost_of(&self, request: &RequestView<'_>) -> u32 {
        let Some(path) = request.extensions().get::<axum::extract::MatchedPath>() else {
            return self.default;
        };
        let path = path.as_str();
        self.routes
            .iter()
            .find(|(template, _)| template == path)
            .map_or(self.default, |(_, cost)| *cost)
    }

    /// Checks every cost against the smallest burst a request can meet.
    pub(crate) fn check(&self, min_burst: u32) -> Result<(), ConfigError> {
        for cost in self
            .routes
            .iter()
            .map(|(_, cost)| *cost)
            .chain([self.default])
        {
            if cost == 0 {
                return Err(ConfigError::new(
                    "a route cost must be at least 1 (to exempt a route, leave it outside the layer)",
                ));
            }
            if cost > min_burst {
                return Err(ConfigError::new(
                    "a route costs more than the smallest burst of the quotas: it could never pass",
                ));
            }
        }
        if let Some((template, _)) = self.routes.iter().find(|(t, _)| !t.starts_with('/')) {
            let _ = template;
            return Err(ConfigError::new(
                "a route template in the cost table must start with '/'",
            ));
        }
        Ok(())
    }
}

impl Default for RouteCosts {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RouteCosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteCosts")
            .field("default", &self.default)
            .field("routes", &self.routes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_checked_against_the_burst() {
        let table = [
            (RouteCosts::new().route("/export", 10), 10, None),
            (
                RouteCosts::new().route("/export", 11),
                10,
                Some("could never pass"),
            ),
            (
                RouteCosts::new().route("/export", 0),
                10,
                Some("at least 1"),
            ),
            (RouteCosts::new().default_cost(0), 10, Some("at least 1")),
            (
                RouteCosts::new().route("export", 2),
                10,
                Some("start with '/'"),
            ),
        ];
        for (costs, burst, expected) in table {
            match (costs.check(burst), expected) {
                (Ok(()), None) => {}
                (Err(error), Some(text)) => assert!(error.to_string().contains(text), "{error}"),
                (got, want) => panic!("{costs:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn without_a_matched_path_the_default_applies() {
        let costs = RouteCosts::new().route("/export", 10).default_cost(2);
        let request = http::Request::builder().uri("/export").body(()).unwrap();
        // The raw path is never read: only the router's MatchedPath.
        assert_eq!(costs.cost_of(&RequestView::new(&request)), 2);
        let twice = RouteCosts::new().route("/a", 3).route("/a", 4);
        assert_eq!(twice.routes, vec![(Cow::Borrowed("/a"), 4)]);
    }
}
