//! Cold-start reference 1: the smallest `lambda_runtime` function (echoes its event). Its
//! init time is the runtime's own floor. Measured by `infra/coldstart.sh`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
