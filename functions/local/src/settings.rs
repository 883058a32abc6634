//! Configuration from the environment (SPEC §7) and the secrets kept in the data folder.

use anyhow::{Context as _, bail};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use weconnect_engine::EngineConfig;
use weconnect_engine::config::env_or;
use weconnect_engine::http::{HttpLimits, JwtSecret};
use weconnect_engine::secrets::SecretBox;

/// File (in the data folder) holding the generated JWT secret.
pub const JWT_SECRET_FILE: &str = "jwt-secret";
/// File (in the data folder) holding the generated credential encryption key.
pub const ENCRYPTION_KEY_FILE: &str = "encryption-key";

#[derive(Debug, Clone)]
pub struct Settings {
    /// WECONNECT_DATA_DIR (default `./.weconnect`)
    pub data_dir: PathBuf,
    /// WECONNECT_HOST (default 127.0.0.1)
    pub host: IpAddr,
    /// WECONNECT_PORT (default 3000; 0 picks a free port)
    pub port: u16,
    /// WECONNECT_WORKERS (default: the number of cores)
    pub workers: usize,
    /// WECONNECT_CLEANUP_INTERVAL_MS (default 60000)
    pub cleanup_interval: Duration,
    /// How often the schedule runner looks for due ticks (WECONNECT_SCHEDULE_INTERVAL_MS, 1000).
    pub schedule_interval: Duration,
    /// How long a shutdown waits for in-flight requests and jobs (WECONNECT_SHUTDOWN_GRACE_MS, 10000).
    pub shutdown_grace: Duration,
    /// WECONNECT_JWT_SECRET (the string's bytes); None: generated into the data folder.
    pub jwt_secret: Option<String>,
    /// WECONNECT_ENCRYPTION_KEY (base64 of 32 bytes); None: generated into the data folder.
    pub encryption_key: Option<String>,
    pub engine: EngineConfig,
    pub http_limits: HttpLimits,
    /// WECONNECT_METRICS (default false): serve `GET /metrics` (Prometheus).
    pub metrics: bool,
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn env_text(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Settings {
    /// Defaults for a data folder (port 3000 on 127.0.0.1), without reading the environment.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 3000,
            workers: cores(),
            cleanup_interval: Duration::from_millis(60_000),
            schedule_interval: Duration::from_millis(1000),
            shutdown_grace: Duration::from_millis(10_000),
            jwt_secret: None,
            encryption_key: None,
            engine: EngineConfig::default(),
            http_limits: HttpLimits::default(),
            metrics: false,
        }
    }

    /// From the environment; a variable that does not parse is an error naming it.
    pub fn from_env() -> anyhow::Result<Self> {
        let mut s =
            Self::new(env_text("WECONNECT_DATA_DIR").unwrap_or_else(|| ".weconnect".into()));
        s.host = env_or("WECONNECT_HOST", s.host)?;
        s.port = env_or("WECONNECT_PORT", s.port)?;
        s.workers = env_or("WECONNECT_WORKERS", s.workers)?.max(1);
        s.cleanup_interval =
            Duration::from_millis(env_or("WECONNECT_CLEANUP_INTERVAL_MS", 60_000u64)?.max(100));
        s.schedule_interval =
            Duration::from_millis(env_or("WECONNECT_SCHEDULE_INTERVAL_MS", 1000u64)?.max(50));
        s.shutdown_grace = Duration::from_millis(env_or("WECONNECT_SHUTDOWN_GRACE_MS", 10_000u64)?);
        s.jwt_secret = env_text("WECONNECT_JWT_SECRET");
        s.encryption_key = env_text("WECONNECT_ENCRYPTION_KEY");
        s.metrics = env_or("WECONNECT_METRICS", false)?;
        s.engine = EngineConfig::from_env()?;
        Ok(s)
    }
}

/// The JWT secret and the encryption key, from the settings or the data folder (generated
/// there on first use).
#[derive(Clone)]
pub struct Secrets {
    pub data_dir: PathBuf,
    pub jwt: JwtSecret,
    pub secret_box: SecretBox,
    pub generated_jwt_secret: bool,
    pub generated_encryption_key: bool,
}

impl Secrets {
    pub fn load(settings: &Settings) -> anyhow::Result<Self> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
        let (jwt_text, generated_jwt_secret) = match &settings.jwt_secret {
            Some(s) => (s.clone(), false),
            None => read_or_generate(&dir.join(JWT_SECRET_FILE), || {
                SecretBox::generate_key().replace(['+', '/', '='], "")
            })?,
        };
        let (key_text, generated_encryption_key) = match &settings.encryption_key {
            Some(k) => (k.clone(), false),
            None => read_or_generate(&dir.join(ENCRYPTION_KEY_FILE), SecretBox::generate_key)?,
        };
        if jwt_text.len() < 16 {
            bail!("the JWT secret must be at least 16 characters");
        }
        let secret_box = SecretBox::from_base64(&key_text).context(
            "WECONNECT_ENCRYPTION_KEY (or the encryption-key file) must be base64 of 32 bytes",
        )?;
        Ok(Self {
            data_dir: dir.clone(),
            jwt: JwtSecret::new(jwt_text.as_bytes()),
            secret_box,
            generated_jwt_secret,
            generated_encryption_key,
        })
    }

    pub fn jwt_secret_file(&self) -> PathBuf {
        self.data_dir.join(JWT_SECRET_FILE)
    }

    pub fn encryption_key_file(&self) -> PathBuf {
        self.data_dir.join(ENCRYPTION_KEY_FILE)
    }
}

/// The trimmed content of `path`, or a new value written there (owner-only) on first use.
fn read_or_generate(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> anyhow::Result<(String, bool)> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => return Ok((text.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let value = generate();
    write_private(path, &value).with_context(|| format!("cannot write {}", path.display()))?;
    Ok((value, true))
}

fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_generated_once_then_reused() {
        let dir = crate::tempdir::TempDir::new("weconnect-secrets").unwrap();
        let settings = Settings::new(dir.path());
        let first = Secrets::load(&settings).unwrap();
        assert!(first.generated_jwt_secret && first.generated_encryption_key);
        let token = first.jwt.issue("u", "o", 60).unwrap();
        let second = Secrets::load(&settings).unwrap();
        assert!(!second.generated_jwt_secret && !second.generated_encryption_key);
        assert_eq!(second.jwt.verify(&token).unwrap().organization_id, "o");
        let sealed = first.secret_box.seal(&serde_json::json!({"k": "v"}));
        assert!(second.secret_box.open(&sealed).is_ok());
    }

    #[test]
    fn bad_keys_are_refused() {
        let dir = crate::tempdir::TempDir::new("weconnect-secrets").unwrap();
        let mut settings = Settings::new(dir.path());
        settings.encryption_key = Some("not-base64-of-32-bytes".into());
        assert!(Secrets::load(&settings).is_err());
        settings.encryption_key = None;
        settings.jwt_secret = Some("short".into());
        assert!(Secrets::load(&settings).is_err());
    }
}
