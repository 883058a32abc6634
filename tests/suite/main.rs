//! The one integration test binary: conformance scenarios on every backend, and the suites
//! of the API and the AWS adapters.

mod api;
mod scenarios;

backend_scenarios!(sqlite, Backend::sqlite());
