//! The `api` Lambda function: the HTTP API (every route but the webhooks) behind an API
//! Gateway HTTP API whose JWT authorizer has verified the caller's token. The principal is
//! read from the authorizer's claims (`sub` and the `ORG_CLAIM` claim, default `org`); a
//! request without claims is a 401. See [`weconnect_engine::lambda::HttpFunction`].

use weconnect_engine::Engine;
use weconnect_engine::http::RouteSet;
use weconnect_engine::lambda::HttpFunction;

/// The handler of the `api` function.
pub fn handler(engine: Engine, org_claim: impl Into<String>) -> HttpFunction {
    HttpFunction::new(engine, RouteSet::Api, org_claim)
}
