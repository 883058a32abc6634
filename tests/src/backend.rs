//! The backends the conformance suite runs on: the embedded SQLite store and queue, and
//! DynamoDB + SQS served by moto. Same scenarios, same assertions.

use std::any::Any;
use std::sync::Arc;
use weconnect_engine::engine::Ports;
use weconnect_engine::ports::{
    BroadcastEvents, Clock, EventSink, JobQueue, NoScheduleSync, Store, SystemClock,
};
use weconnect_engine::secrets::SecretBox;
use weconnect_engine::{Engine, EngineConfig};

pub struct Backend {
    pub name: &'static str,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
    pub events: Arc<dyn EventSink>,
    /// Keeps temp dirs and servers alive for the backend's lifetime.
    pub _guard: Box<dyn Any + Send + Sync>,
}

impl Backend {
    /// SQLite in a fresh temp folder.
    pub async fn sqlite() -> Backend {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, queue) =
            weconnect_engine::adapters::sqlite::open(dir.path()).expect("open sqlite");
        Backend {
            name: "sqlite",
            store,
            queue,
            events: Arc::new(BroadcastEvents::new(1024)),
            _guard: Box::new(dir),
        }
    }

    /// DynamoDB + SQS + EventBridge on moto, fresh resources for this backend.
    pub async fn moto() -> Backend {
        let env = crate::moto::aws_env().await;
        Backend {
            name: "dynamo",
            store: env.adapters.store.clone(),
            queue: env.adapters.queue.clone(),
            events: env.adapters.events.clone(),
            _guard: Box::new(env),
        }
    }

    /// An engine on this backend. Tests call a loopback sink, so private addresses are allowed.
    pub fn engine(&self, config: EngineConfig) -> Engine {
        self.engine_with_queue(config, self.queue.clone())
    }

    /// An engine whose queue is wrapped (fault injection).
    pub fn engine_with_queue(&self, config: EngineConfig, queue: Arc<dyn JobQueue>) -> Engine {
        let ports = Ports {
            store: self.store.clone(),
            queue,
            events: self.events.clone(),
            schedules: Arc::new(NoScheduleSync),
            clock: Arc::new(SystemClock) as Arc<dyn Clock>,
        };
        Engine::new(ports, config, test_secrets())
    }
}

/// A fixed key: tests open what they seal.
pub fn test_secrets() -> SecretBox {
    SecretBox::new(&[7u8; 32])
}

/// The engine settings of the scenarios: loopback allowed, quick retries.
pub fn test_config() -> EngineConfig {
    EngineConfig {
        http_allow_private: true,
        retry_delay_ms: 50,
        retry_max_delay_ms: 500,
        ..EngineConfig::default()
    }
}
