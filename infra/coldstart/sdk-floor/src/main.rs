//! Cold-start reference 2: loads `aws_config` from the environment and builds the DynamoDB,
//! SQS and EventBridge clients the functions use, then serves a no-op handler. Its init time
//! is the floor every AWS function pays. Measured by `infra/coldstart.sh`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = aws_config::load_from_env().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        // The clients live as long as the handler, as in the functions.
        let _clients = (&dynamo, &sqs, &events);
        async move { Ok::<Value, Error>(event.payload) }
    }))
    .await
}
