//! The one integration test binary: conformance scenarios on every backend, and the suites
//! of the API and the AWS adapters.

mod api;
mod aws;
mod scenarios;

backend_scenarios!(sqlite, Backend::sqlite());
backend_scenarios!(dynamo, Backend::moto());
