//! `GET /openapi.json` (SPEC §11): the OpenAPI 3.1 document of every route, generated from
//! the handlers' `#[utoipa::path]` annotations and the types' `ToSchema` derives.
//!
//! What every route shares is added here rather than repeated on each handler: the bearer
//! security scheme, the spec-shaped error responses, and the webhook intake's other methods
//! and alias (`ANY /webhook/{id}`, `/webhook/handler/{id}`).

use super::error::ErrorBody;
use super::{callbacks, circuits, console, credentials, events, executions, monitoring};
use super::{webhooks, workflows};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::openapi::path::{HttpMethod, Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "WeConnect",
        description = "Workflow automation engine: workflows, executions, live events, callbacks, circuits and credentials. Errors always have the shape `{statusCode, message, error, details}`.",
    ),
    paths(
        monitoring::liveness,
        monitoring::health,
        monitoring::metrics,
        monitoring::prometheus,
        workflows::list,
        workflows::create,
        workflows::get,
        workflows::update,
        workflows::delete,
        workflows::trends,
        credentials::list,
        credentials::create,
        credentials::delete,
        executions::start,
        executions::list,
        executions::statistics,
        executions::list_for_workflow,
        executions::detail,
        executions::cancel,
        executions::pause,
        executions::resume,
        executions::retry,
        executions::logs,
        executions::metrics,
        executions::node_output,
        events::events,
        callbacks::complete_node,
        callbacks::fail_node,
        callbacks::complete,
        callbacks::fail,
        circuits::list,
        circuits::get,
        circuits::configure,
        circuits::reset,
        webhooks::handle,
        console::page,
        console::asset,
        openapi_json,
    ),
    components(schemas(ErrorBody)),
    security(("bearer" = [])),
    modifiers(&Shared),
    tags(
        (name = "workflows", description = "Workflow definitions and their versions"),
        (name = "executions", description = "Executions: start, list, read, lifecycle, logs, live events"),
        (name = "callbacks", description = "Completing or failing a waiting `flow.waitForCallback` node"),
        (name = "circuits", description = "Circuit breakers of the organization's HTTP targets"),
        (name = "credentials", description = "Named secrets for nodes and webhook auth"),
        (name = "webhooks", description = "Webhook intake (no bearer token: each trigger has its own auth)"),
        (name = "monitoring", description = "Health and metrics"),
        (name = "console", description = "The web console's page and assets (they hold no data)"),
    )
)]
pub struct ApiDoc;

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
});

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "monitoring", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
        .into_response()
}

/// The document as a value (tests, tools).
pub fn document() -> Document {
    ApiDoc::openapi()
}

struct Shared;

impl Modify for Shared {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT with `sub` (user) and `org` (organization); `weconnect token` prints one",
                    ))
                    .build(),
            ),
        );
        webhook_methods(doc);
        for (path, item) in doc.paths.paths.iter_mut() {
            let path = path.clone();
            for op in operations(item) {
                add_errors(&path, op);
            }
        }
    }
}

/// `ANY /webhook/{id}`: the trigger declares the method; the alias `/webhook/handler/{id}`.
fn webhook_methods(doc: &mut Document) {
    let Some(post) = doc
        .paths
        .paths
        .get("/webhook/{id}")
        .and_then(|item| item.post.clone())
    else {
        return;
    };
    for (path, prefix) in [
        ("/webhook/{id}", "webhook"),
        ("/webhook/handler/{id}", "webhook_handler"),
    ] {
        let mut item = PathItem::default();
        for (method, name) in [
            (HttpMethod::Get, "get"),
            (HttpMethod::Post, "post"),
            (HttpMethod::Put, "put"),
            (HttpMethod::Patch, "patch"),
            (HttpMethod::Delete, "delete"),
        ] {
            let mut op = post.clone();
            op.operation_id = Some(format!("{prefix}_{name}"));
            match method {
                HttpMethod::Get => item.get = Some(op),
                HttpMethod::Post => item.post = Some(op),
                HttpMethod::Put => item.put = Some(op),
                HttpMethod::Patch => item.patch = Some(op),
                _ => item.delete = Some(op),
            }
        }
        doc.paths.paths.insert(path.to_string(), item);
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// The errors any operation may answer, in the spec's shape: 400 (bad query, path, header
/// or body), 401 (a protected route without a valid token), 404 (unknown or another
/// organization's resource), 413 (body too large), 500 and 503 (store or queue unavailable).
fn add_errors(path: &str, op: &mut Operation) {
    let public = op
        .security
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
        .is_some_and(|v| v == serde_json::json!([{}]));
    let mut codes = vec![
        ("400", "Bad request"),
        ("404", "Not found"),
        ("500", "Internal server error"),
        ("503", "Service unavailable"),
    ];
    if !public {
        codes.push(("401", "Missing or invalid bearer token"));
    }
    if op.request_body.is_some() {
        codes.push(("413", "Request body too large"));
    }
    if path.starts_with("/console") {
        // Static assets: unknown ones are 404.
        codes.retain(|(c, _)| *c == "404");
    }
    for (code, description) in codes {
        op.responses
            .responses
            .entry(code.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            Content::new(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody")))),
                        )
                        .build(),
                )
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn doc() -> Value {
        serde_json::from_str(&DOCUMENT).unwrap()
    }

    #[test]
    fn every_route_of_the_spec_is_documented() {
        let doc = doc();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let routes = [
            ("get", "/health"),
            ("get", "/metrics"),
            ("get", "/openapi.json"),
            ("get", "/console"),
            ("get", "/monitoring/health"),
            ("get", "/monitoring/metrics"),
            ("get", "/workflows"),
            ("post", "/workflows"),
            ("get", "/workflows/{id}"),
            ("put", "/workflows/{id}"),
            ("delete", "/workflows/{id}"),
            ("get", "/workflows/{id}/trends"),
            ("get", "/credentials"),
            ("post", "/credentials"),
            ("delete", "/credentials/{id}"),
            ("post", "/executions"),
            ("get", "/executions"),
            ("get", "/executions/statistics"),
            ("get", "/executions/workflow/{workflowId}"),
            ("get", "/executions/{id}"),
            ("post", "/executions/{id}/cancel"),
            ("post", "/executions/{id}/pause"),
            ("post", "/executions/{id}/resume"),
            ("post", "/executions/{id}/retry"),
            ("get", "/executions/{id}/logs"),
            ("get", "/executions/{id}/events"),
            ("get", "/executions/{id}/metrics"),
            ("get", "/executions/{id}/nodes/{nodeId}/output"),
            ("post", "/executions/{id}/nodes/{nodeId}/complete"),
            ("post", "/executions/{id}/nodes/{nodeId}/fail"),
            ("post", "/callbacks/{token}"),
            ("post", "/callbacks/{token}/fail"),
            ("get", "/circuits"),
            ("get", "/circuits/{key}"),
            ("put", "/circuits/{key}"),
            ("post", "/circuits/{key}/reset"),
            ("post", "/webhook/{id}"),
            ("get", "/webhook/{id}"),
            ("post", "/webhook/handler/{id}"),
        ];
        for (method, path) in routes {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is not documented");
            assert!(
                op["responses"]["404"].is_object(),
                "{method} {path} has no 404"
            );
        }
    }

    #[test]
    fn errors_and_security_are_on_every_operation() {
        let doc = doc();
        let ops: Vec<(&String, &String, &Value)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .iter()
                    .map(move |(method, op)| (path, method, op))
            })
            .collect();
        for (path, method, op) in ops {
            let public = op["security"] == serde_json::json!([{}]);
            let protected = !public && !path.starts_with("/console");
            assert_eq!(
                op["responses"]["401"].is_object(),
                protected,
                "{method} {path}"
            );
            if !path.starts_with("/console") {
                assert_eq!(
                    op["responses"]["400"]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path}"
                );
            }
        }
        // The routes without a bearer token.
        for path in [
            "/health",
            "/callbacks/{token}",
            "/webhook/{id}",
            "/openapi.json",
        ] {
            let item = doc["paths"][path].as_object().unwrap();
            for op in item.values() {
                assert_eq!(op["security"], serde_json::json!([{}]), "{path}");
            }
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }

    #[test]
    fn the_execution_detail_schema_has_its_nodes_and_progress() {
        let doc = doc();
        let detail = &doc["components"]["schemas"]["ExecutionDetail"];
        let text = detail.to_string();
        assert!(
            text.contains("nodes") && text.contains("progress"),
            "{text}"
        );
        let execution = &doc["components"]["schemas"]["Execution"]["properties"];
        assert_eq!(
            execution["createdAt"]["$ref"],
            "#/components/schemas/Timestamp"
        );
        assert_eq!(
            doc["components"]["schemas"]["Timestamp"]["format"],
            "date-time"
        );
    }
}
