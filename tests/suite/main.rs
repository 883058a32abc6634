//! The one integration test binary: conformance scenarios and the store contract on every
//! backend, and the suites of the API, the AWS adapters and the Lambda functions.

mod api;
mod aws;
mod composition;
mod composition_api;
mod flow_control;
mod hardening;
mod insights_api;
mod interfaces;
mod lambda;
mod scenarios;
mod store_contract;
mod template;

backend_scenarios!(sqlite, Backend::sqlite());
backend_scenarios!(dynamo, Backend::moto());

composition_scenarios!(composition_sqlite, Backend::sqlite());
composition_scenarios!(composition_dynamo, Backend::moto());

flow_control_scenarios!(flow_control_sqlite, Backend::sqlite());
flow_control_scenarios!(flow_control_dynamo, Backend::moto());

store_contract!(store_contract_sqlite, Backend::sqlite());
store_contract!(store_contract_dynamo, Backend::moto());
