//! The `webhook` Lambda function: webhook intake (`ANY /webhook/{id}` and
//! `/webhook/handler/{id}`) behind API Gateway routes without an authorizer; each webhook's
//! own auth (`none`, `header`, Standard Webhooks `hmac`) is checked by the router. A
//! `responseMode: lastNode` webhook waits for its execution by polling the store (at most
//! 25 s; the worker function runs the nodes). See [`weconnect_engine::lambda::HttpFunction`].

use weconnect_engine::Engine;
use weconnect_engine::http::RouteSet;
use weconnect_engine::lambda::HttpFunction;

/// The handler of the `webhook` function.
pub fn handler(engine: Engine) -> HttpFunction {
    // Webhook routes never read claims; the claim name only matters to the API routes.
    HttpFunction::new(
        engine,
        RouteSet::Webhooks,
        weconnect_engine::lambda::DEFAULT_ORG_CLAIM,
    )
}
