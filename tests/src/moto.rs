//! The AWS test harness: one `moto_server` per test process, and per test a fresh table
//! (created from template.yaml's `Table` definition), job queue + DLQ (redrive policy) and
//! event bus, with the adapters built on them.
//!
//! ```text
//! let env = weconnect_tests::moto::aws_env().await;
//! let store = env.adapters.store.clone();
//! ```
//!
//! `moto_server` must be on the PATH (`pip install 'moto[server]'`); the tests fail with a
//! clear message when it is not, they never skip. The server is started on a free loopback
//! port and stops when the test process exits (its stdin is a pipe from this process).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use serde::Deserialize;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::OnceCell;
use weconnect_engine::adapters::aws::{AwsAdapters, AwsConfig, build_with_sdk};
use weconnect_engine::engine::Ports;
use weconnect_engine::ports::Clock;

pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// The running moto server.
pub struct Moto {
    pub endpoint: String,
    _process: std::sync::Mutex<Child>,
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();

/// The process's moto server, started on first use.
pub async fn moto() -> &'static Moto {
    MOTO.get_or_init(start_moto).await
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// moto_server's `main`, with werkzeug's `threaded` forced off.
const SINGLE_THREADED: &str = "import sys, moto.server as ms\n\
_run = ms.run_simple\n\
def run_simple(*a, **k):\n    k[\"threaded\"] = False\n    return _run(*a, **k)\n\
ms.run_simple = run_simple\n\
sys.exit(ms.main(sys.argv[1:]))";

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// The interpreter in the shebang of the real `moto_server` script (behind a pyenv shim if
/// there is one), checked to import moto.
fn moto_python() -> Option<std::path::PathBuf> {
    let mut script = on_path("moto_server")?;
    let first_line = |p: &std::path::Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .unwrap_or_default()
    };
    if !first_line(&script).contains("python") {
        // A shim (pyenv, asdf): ask it where the real script is.
        let out = Command::new("pyenv")
            .args(["which", "moto_server"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        script = std::path::PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    }
    let shebang = first_line(&script);
    let interpreter = shebang.strip_prefix("#!")?.trim();
    let python = match interpreter
        .split_whitespace()
        .collect::<Vec<_>>()
        .as_slice()
    {
        [env, python] if env.ends_with("/env") => on_path(python)?,
        [python] => std::path::PathBuf::from(python),
        _ => return None,
    };
    let ok = Command::new(&python)
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then_some(python)
}

async fn start_moto() -> Moto {
    match Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => {}
        Err(e) => panic!(
            "moto_server is required by the AWS tests and could not be run ({e}); \
             install it with `pip install 'moto[server]'`"
        ),
    }
    let port = free_port();
    let log = std::env::temp_dir().join(format!("weconnect-moto-{port}.log"));
    // moto_server serves requests on several threads, and moto's conditional writes are not
    // atomic across threads (it checks the condition, then writes, without a lock), while
    // DynamoDB's are. So the harness runs moto_server's own `main` with werkzeug's threading
    // off, through the Python interpreter moto_server is installed with: requests are then
    // handled one at a time, as DynamoDB serializes the writes of one item.
    let command = match moto_python() {
        Some(python) => format!(
            "'{python}' -c '{SINGLE_THREADED}' -H 127.0.0.1 -p {port}",
            python = python.display()
        ),
        None => {
            eprintln!(
                "warning: the Python interpreter of moto_server was not found; running it \
                 threaded (concurrency tests may see moto's non-atomic conditional writes)"
            );
            format!("moto_server -H 127.0.0.1 -p {port}")
        }
    };
    // The shell stops moto when our end of its stdin closes, i.e. when this process exits,
    // however it exits.
    let script = format!(
        "{command} >'{}' 2>&1 & pid=$!; read _; kill $pid 2>/dev/null; wait $pid",
        log.display()
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh for moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(resp) = reqwest::get(format!("{endpoint}/moto-api/")).await
            && resp.status().is_success()
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("moto_server did not answer on {endpoint} within 60 s; its log:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Moto {
        endpoint,
        _process: std::sync::Mutex::new(child),
    }
}

/// SDK configuration pointing at moto, with dummy credentials. No I/O.
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "moto",
        ))
        .load()
        .await
}

// ---- the table definition, read from template.yaml ----------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    pub billing_mode: String,
    pub attribute_definitions: Vec<AttributeDef>,
    pub key_schema: Vec<KeyDef>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDef>,
    pub time_to_live_specification: Option<TtlDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDef {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyDef {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDef {
    pub index_name: String,
    pub key_schema: Vec<KeyDef>,
    pub projection: ProjectionDef,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDef {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDef {
    pub attribute_name: String,
    pub enabled: bool,
}

pub fn template_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

/// template.yaml, parsed (intrinsics such as `!Ref` are tagged values).
pub fn template() -> serde_yaml::Value {
    let path = template_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// `Resources.Table.Properties` of template.yaml.
pub fn table_definition() -> TableDefinition {
    let path = template_path();
    let doc = template();
    let props = doc
        .get("Resources")
        .and_then(|r| r.get("Table"))
        .and_then(|t| t.get("Properties"))
        .cloned()
        .unwrap_or_else(|| panic!("{} has no Resources.Table.Properties", path.display()));
    serde_yaml::from_value(props).unwrap_or_else(|e| panic!("Table properties: {e}"))
}

fn keys(defs: &[KeyDef]) -> Vec<KeySchemaElement> {
    defs.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .unwrap()
        })
        .collect()
}

/// Creates `name` on moto from the template's definition.
pub async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    let def = table_definition();
    let mut req = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::from(def.billing_mode.as_str()))
        .set_key_schema(Some(keys(&def.key_schema)));
    for a in &def.attribute_definitions {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .unwrap(),
        );
    }
    for i in &def.global_secondary_indexes {
        req = req.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(keys(&i.key_schema)))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::from(
                            i.projection.projection_type.as_str(),
                        ))
                        .set_non_key_attributes(
                            (!i.projection.non_key_attributes.is_empty())
                                .then(|| i.projection.non_key_attributes.clone()),
                        )
                        .build(),
                )
                .build()
                .unwrap(),
        );
    }
    req.send().await.expect("create the table on moto");
    if let Some(ttl) = &def.time_to_live_specification {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(&ttl.attribute_name)
                    .enabled(ttl.enabled)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("enable TTL on moto");
    }
}

// ---- one isolated environment per test ---------------------------------------------------

/// Fresh AWS resources on moto, the adapters built on them, and raw clients to inspect them.
pub struct AwsEnv {
    pub name: String,
    pub endpoint: String,
    pub config: AwsConfig,
    pub sdk: SdkConfig,
    pub adapters: AwsAdapters,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub events: aws_sdk_eventbridge::Client,
    pub queue_arn: String,
    pub dlq_arn: String,
    /// The high-priority queue's ARN, when the options asked for one.
    pub high_queue_arn: Option<String>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A unique name for this test's resources.
fn unique_name() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let salt = uuid::Uuid::new_v4().simple().to_string();
    format!("wc{}-{n}-{}", std::process::id(), &salt[..8])
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> String {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("get the queue ARN")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .expect("queue has an ARN")
}

/// Options of [`aws_env_with`].
#[derive(Debug, Clone)]
pub struct EnvOptions {
    /// `maxReceiveCount` of the redrive policy.
    pub max_receive_count: u32,
    pub consumed_capacity: bool,
    /// A second queue for high-priority jobs (`HIGH_PRIORITY_QUEUE_URL`).
    pub high_priority_queue: bool,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            max_receive_count: 5,
            consumed_capacity: false,
            high_priority_queue: false,
        }
    }
}

pub async fn aws_env() -> AwsEnv {
    aws_env_with(EnvOptions::default()).await
}

pub async fn aws_env_with(options: EnvOptions) -> AwsEnv {
    let endpoint = moto().await.endpoint.clone();
    let sdk = sdk_config(&endpoint).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let name = unique_name();

    create_table(&dynamo, &name).await;
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create the DLQ")
        .queue_url
        .expect("DLQ url");
    let dlq_arn = queue_arn(&sqs, &dlq_url).await;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": options.max_receive_count.to_string(),
    });
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{name}-jobs"))
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive.to_string(),
        )
        .send()
        .await
        .expect("create the job queue")
        .queue_url
        .expect("queue url");
    let high_url = if options.high_priority_queue {
        Some(
            sqs.create_queue()
                .queue_name(format!("{name}-high"))
                .attributes(
                    aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
                    redrive.to_string(),
                )
                .send()
                .await
                .expect("create the high-priority queue")
                .queue_url
                .expect("queue url"),
        )
    } else {
        None
    };
    let high_queue_arn = match &high_url {
        Some(url) => Some(queue_arn(&sqs, url).await),
        None => None,
    };
    let queue_arn = queue_arn(&sqs, &queue_url).await;
    let bus = format!("{name}-bus");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("create the event bus");

    let mut config = AwsConfig::new(&name, &queue_url);
    config.dlq_url = Some(dlq_url);
    config.high_priority_queue_url = high_url;
    config.event_bus_name = bus;
    config.cursor_secret = Some(format!("secret-{name}"));
    config.consumed_capacity = options.consumed_capacity;
    let adapters = build_with_sdk(&config, &sdk);
    AwsEnv {
        name,
        endpoint,
        config,
        sdk,
        adapters,
        dynamo,
        sqs,
        events,
        queue_arn,
        dlq_arn,
        high_queue_arn,
    }
}

impl AwsEnv {
    /// The engine's ports on these adapters.
    pub fn ports(&self, clock: std::sync::Arc<dyn Clock>) -> Ports {
        Ports {
            store: self.adapters.store.clone(),
            queue: self.adapters.queue.clone(),
            events: self.adapters.events.clone(),
            schedules: self.adapters.schedules.clone(),
            clock,
        }
    }
}
