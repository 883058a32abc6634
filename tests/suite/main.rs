//! The one integration test binary: conformance scenarios on every backend, and the suites
//! of the API, the AWS adapters and the Lambda functions.

mod api;
mod aws;
mod hardening;
mod lambda;
mod scenarios;

backend_scenarios!(sqlite, Backend::sqlite());
backend_scenarios!(dynamo, Backend::moto());
