//! The `weconnect` command line, run as a process. (Having this integration test also makes
//! `cargo test --workspace` build `target/<profile>/weconnect`, which the suite's
//! SIGKILL test spawns.)

use std::process::Command;
use weconnect::tempdir::TempDir;

fn weconnect() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weconnect"))
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

#[test]
fn validate_accepts_the_examples_and_explains_bad_files() {
    for name in [
        "order-alert.json",
        "hello-webhook.json",
        "heartbeat-schedule.json",
    ] {
        let out = weconnect()
            .arg("validate")
            .arg(examples().join(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    }
    let dir = TempDir::new("weconnect-cli").unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "Bad", "nodes": [{"id": "hook", "name": "Hook", "type": "trigger.webhook", "parameters": {"method": "FETCH"}}]}"#,
    )
    .unwrap();
    let out = weconnect().arg("validate").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hook") && err.contains("method"), "{err}");
    std::fs::write(&bad, "{ not json").unwrap();
    let out = weconnect().arg("validate").arg(&bad).output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn token_uses_the_data_folder_secret() {
    let dir = TempDir::new("weconnect-cli").unwrap();
    let out = weconnect()
        .args(["token", "--sub", "u1", "--org", "o1"])
        .env("WECONNECT_DATA_DIR", dir.path())
        .env_remove("WECONNECT_JWT_SECRET")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(token.split('.').count(), 3, "{token}");
    let secret = std::fs::read_to_string(dir.path().join("jwt-secret")).unwrap();
    let p = weconnect_engine::http::JwtSecret::new(secret.trim().as_bytes())
        .verify(&token)
        .unwrap();
    assert_eq!(p.user_id, "u1");
    assert_eq!(p.organization_id, "o1");
}

#[test]
fn run_executes_a_workflow_to_completion() {
    let dir = TempDir::new("weconnect-cli").unwrap();
    let file = dir.path().join("wf.json");
    std::fs::write(
        &file,
        r#"{"name": "Run", "nodes": [
            {"id": "start", "name": "Start", "type": "trigger.manual"},
            {"id": "set", "name": "Set", "type": "data.set", "parameters": {"values": {"double": "{{ trigger.n * 2 }}"}}}
        ], "connections": [{"source": "start", "target": "set"}]}"#,
    )
    .unwrap();
    let out = weconnect()
        .arg("run")
        .arg(&file)
        .args(["--input", r#"{"n": 21}"#])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(detail["status"], "success");
    assert_eq!(detail["outputData"]["double"], 42);
    assert_eq!(detail["progress"]["percent"], 100.0);
}
