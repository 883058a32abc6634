#!/usr/bin/env python3
"""Runs schemathesis against a `weconnect serve` it starts (SPEC §11: zero 5xx, every
response conforming to /openapi.json).

Before the run it creates real resources (workflows, a finished execution, an execution
waiting for a callback, a credential) so that the routes with ids reach their logic instead of
answering 404 to random ids; their ids are given to schemathesis per operation. The number of
examples per operation is bounded (`--max-examples`, default 20) to keep CI short.

Usage: infra/schemathesis.py [--bin target/debug/weconnect] [--max-examples N]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import requests

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, probe, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    sys.exit(f"schemathesis setup: timed out waiting for {what}")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(root, "target/debug/weconnect"))
    parser.add_argument("--max-examples", type=int, default=20)
    args = parser.parse_args()

    if shutil.which("st") is None:
        sys.exit("schemathesis is not installed (pip install schemathesis)")
    if not os.path.exists(args.bin):
        sys.exit(f"{args.bin} is missing: run `cargo build --workspace --bins` first")

    data = tempfile.mkdtemp(prefix="weconnect-st-")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        WECONNECT_DATA_DIR=data,
        WECONNECT_PORT=str(port),
        WECONNECT_METRICS="true",
        RUST_LOG="error",
    )
    log = open(os.path.join(data, "serve.log"), "w")
    server = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=log)
    try:
        wait_until("the server", lambda: requests.get(f"{base}/health", timeout=2).ok)
        token = subprocess.run(
            [args.bin, "token", "--sub", "schemathesis", "--org", "schemathesis"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        ids = create_resources(base, token)
        config = os.path.join(data, "schemathesis.toml")
        with open(config, "w") as f:
            f.write(config_text(ids))
        command = [
            "st",
            "--no-color",
            "--config-file",
            config,
            "run",
            f"{base}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--max-examples",
            str(args.max_examples),
            "--phases",
            "examples,coverage,fuzzing",
            "--workers",
            "2",
            "--seed",
            "20261202",
        ]
        print("running:", " ".join(c if "Bearer" not in c else "Authorization: Bearer …" for c in command))
        # Its cache (.schemathesis/) goes to the temporary folder, not the checkout.
        result = subprocess.run(command, cwd=data)
        if server.poll() is not None:
            sys.exit("the server exited during the schemathesis run (see its log above)")
        if result.returncode != 0:
            log.flush()
            print(open(os.path.join(data, "serve.log")).read()[-4000:])
            sys.exit(f"schemathesis found problems (exit code {result.returncode})")
        print("schemathesis: no 5xx, every response conforms to /openapi.json")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data, ignore_errors=True)


def create_resources(base, token):
    """A workflow with a finished execution, one waiting for a callback, a credential."""
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"

    def post(path, body):
        r = s.post(f"{base}{path}", json=body, timeout=10)
        if r.status_code >= 300:
            sys.exit(f"schemathesis setup: POST {path} answered {r.status_code}: {r.text}")
        return r.json()

    done = post(
        "/workflows",
        {
            "name": "Schemathesis: shape",
            "status": "active",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {
                    "id": "shape",
                    "name": "Shape",
                    "type": "data.set",
                    "parameters": {"values": {"greeting": "Hello {{ trigger.name }}"}},
                },
                {"id": "hook", "name": "Hook", "type": "trigger.webhook",
                 "parameters": {"method": "POST", "path": "schemathesis"}},
            ],
            "connections": [
                {"source": "start", "target": "shape"},
                {"source": "hook", "target": "shape"},
            ],
        },
    )
    waiting = post(
        "/workflows",
        {
            "name": "Schemathesis: approval",
            "status": "active",
            "nodes": [
                {"id": "start", "name": "Start", "type": "trigger.manual"},
                {"id": "approve", "name": "Approve", "type": "flow.waitForCallback"},
            ],
            "connections": [{"source": "start", "target": "approve"}],
        },
    )
    finished = post("/executions", {"workflowId": done["id"], "inputData": {"name": "Ada"}})
    parked = post("/executions", {"workflowId": waiting["id"]})

    def status_of(execution_id):
        return s.get(f"{base}/executions/{execution_id}", timeout=5).json()

    wait_until("the execution to finish", lambda: status_of(finished["id"])["status"] == "success")
    detail = {}

    def callback_known():
        detail.update(status_of(parked["id"]))
        node = next(n for n in detail["nodes"] if n["nodeId"] == "approve")
        return node["status"] == "waiting" and node.get("callback")

    wait_until("the callback node to wait", callback_known)
    url = next(n for n in detail["nodes"] if n["nodeId"] == "approve")["callback"]["url"]
    credential = post(
        "/credentials",
        {"name": "schemathesis", "type": "bearer", "data": {"token": "t0ken"}},
    )
    return {
        "workflow": done["id"],
        "waiting_workflow": waiting["id"],
        "execution": finished["id"],
        "parked": parked["id"],
        "callback_token": url.rstrip("/").split("/callbacks/")[1],
        "credential": credential["id"],
    }


def config_text(ids):
    """Per-operation ids: the real resources instead of random strings."""
    blocks = [
        ("^/workflows/\\\\{id\\\\}", {"id": ids["workflow"]}),
        ("^/executions/workflow/", {"workflowId": ids["workflow"]}),
        ("^/executions/\\\\{id\\\\}/nodes/", {"id": ids["parked"], "nodeId": "approve"}),
        ("^/executions/\\\\{id\\\\}(/(logs|events|metrics|retry|cancel|pause|resume))?$",
         {"id": ids["execution"]}),
        ("^/callbacks/", {"token": ids["callback_token"]}),
        ("^/credentials/", {"id": ids["credential"]}),
        ("^/webhook/", {"id": "schemathesis"}),
        ("^/console/", {"file": "app.js"}),
    ]
    out = []
    for regex, params in blocks:
        out.append("[[operations]]")
        out.append(f'include-path-regex = "{regex}"')
        pairs = ", ".join(f'"{k}" = "{v}"' for k, v in params.items())
        out.append(f"parameters = {{ {pairs} }}")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main()
