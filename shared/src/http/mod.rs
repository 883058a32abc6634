//! The HTTP router (API + webhooks), shared by the local server and the Lambda functions.
//! OWNER: HTTP helper (placeholder)
