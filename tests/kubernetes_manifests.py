#!/usr/bin/env python3
"""examples/kubernetes/ checked without a cluster (none runs here): every manifest parses
as YAML; the kinds are a Deployment, a headless Service and a ClusterIP Service; the
Services and the Deployment's selector match the pod template's labels; the ports agree
(Service targetPort, containerPort, the server's --listen port, the probes' address); the
probes run `bokbok ping` with options `bokbok ping --help` documents; and the real demo
server, started with the container's arguments (the listen address moved to 127.0.0.1:0),
listens, passes both probes run by the real bokbok tool, and stops with exit 0 on
SIGTERM, after which the probe fails. The example's README names every manifest.

Usage: kubernetes_manifests.py SOURCE_ROOT DEMO_SERVER TOOL [MANIFEST_DIR]
"""
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time

import yaml

root, demo_server, tool = sys.argv[1:4]
folder = pathlib.Path(sys.argv[4] if len(sys.argv) > 4 else os.path.join(root, "examples", "kubernetes"))
failures = []


def fail(why):
    failures.append(why)


def finish():
    for f in failures:
        print("FAIL:", f)
    sys.exit(1 if failures else 0)


# Every manifest parses; every document names its apiVersion, kind and name.
docs = []
files = sorted(folder.glob("*.yaml"))
if not files:
    sys.exit(f"no manifests in {folder}")
for path in files:
    try:
        for d in yaml.safe_load_all(path.read_text()):
            if d is None:
                continue
            if not isinstance(d, dict) or not all(k in d for k in ("apiVersion", "kind", "metadata")):
                fail(f"{path.name}: a document without apiVersion, kind and metadata")
                continue
            docs.append((path.name, d))
    except yaml.YAMLError as e:
        fail(f"{path.name}: not YAML: {e}")
if failures:
    finish()

api = {"Deployment": "apps/v1", "Service": "v1"}
for name, d in docs:
    if api.get(d["kind"]) != d["apiVersion"]:
        fail(f"{name}: kind {d['kind']} with apiVersion {d['apiVersion']} (expected one of {api})")
    if not d["metadata"].get("name"):
        fail(f"{name}: no metadata.name")
deployments = [d for _, d in docs if d["kind"] == "Deployment"]
services = [d for _, d in docs if d["kind"] == "Service"]
headless = [s for s in services if s["spec"].get("clusterIP") == "None"]
cluster_ip = [s for s in services if s["spec"].get("clusterIP") != "None"
              and s["spec"].get("type", "ClusterIP") == "ClusterIP"]
if len(deployments) != 1 or len(headless) != 1 or len(cluster_ip) != 1:
    fail(f"expected one Deployment, one headless and one ClusterIP Service; found "
         f"{len(deployments)}, {len(headless)}, {len(cluster_ip)}")
    finish()
dep = deployments[0]

# Labels and selectors.
labels = dep["spec"]["template"]["metadata"].get("labels") or {}
match = dep["spec"]["selector"].get("matchLabels") or {}
if not match or any(labels.get(k) != v for k, v in match.items()):
    fail(f"Deployment selector {match} does not match the pod labels {labels}")
if dep["spec"].get("replicas") != 3:
    fail(f"Deployment replicas {dep['spec'].get('replicas')}, README says 3")
for s in services:
    sel = s["spec"].get("selector") or {}
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        fail(f"Service {s['metadata']['name']} selector {sel} does not match the pod labels {labels}")

# The container: the demo server listening on its containerPort.
containers = dep["spec"]["template"]["spec"]["containers"]
if len(containers) != 1:
    fail(f"expected one container, found {len(containers)}")
    finish()
c = containers[0]
argv = list(c.get("command") or []) + list(c.get("args") or [])
if not argv or argv[0] != os.path.basename(demo_server):
    fail(f"the container runs {argv[:1]}, not {os.path.basename(demo_server)}")
listen = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--listen"]
m = re.fullmatch(r"tcp:(\*|\[::\]|0\.0\.0\.0):(\d+)", listen[0]) if len(listen) == 1 else None
if not m:
    fail(f"expected one --listen tcp:*:PORT, found {listen}")
    finish()
port = int(m.group(2))
ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
if list(ports.values()) != [port]:
    fail(f"containerPort {list(ports.values())} differs from the --listen port {port}")
for s in services:
    for p in s["spec"].get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        if ports.get(target, target) != port:
            fail(f"Service {s['metadata']['name']} targetPort {target} is not the container's port {port}")
        if p.get("protocol", "TCP") != "TCP":
            fail(f"Service {s['metadata']['name']} port protocol {p.get('protocol')}")

# The probes: `bokbok ping` with documented options, on the container's port.
ping_help = subprocess.run([tool, "ping", "--help"], capture_output=True, text=True,
                           timeout=30).stdout
documented = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", ping_help))
probes = {}
for kind in ("livenessProbe", "readinessProbe"):
    probe = c.get(kind)
    cmd = (probe or {}).get("exec", {}).get("command")
    if not cmd:
        fail(f"no exec {kind}")
        continue
    if cmd[:2] != [os.path.basename(tool), "ping"]:
        fail(f"{kind} runs {cmd[:2]}, not {os.path.basename(tool)} ping")
        continue
    for a in cmd[2:]:
        if a.startswith("-") and a not in documented:
            fail(f"{kind}: option {a} is not in `bokbok ping --help`")
    addr = cmd[-1]
    if addr != f"tcp:127.0.0.1:{port}":
        fail(f"{kind} pings {addr}, not the container's tcp:127.0.0.1:{port}")
    if "--timeout" in cmd:
        t = float(cmd[cmd.index("--timeout") + 1])
        if not t < probe.get("timeoutSeconds", 1):
            fail(f"{kind}: ping --timeout {t} is not below timeoutSeconds {probe.get('timeoutSeconds', 1)}")
    probes[kind] = cmd

# The example's README names every manifest and the headless Service's DNS name.
readme = (folder / "README.md").read_text() if (folder / "README.md").exists() else ""
for path in files:
    if path.name not in readme:
        fail(f"examples/kubernetes/README.md does not name {path.name}")
name = headless[0]["metadata"]["name"]
if f"tcp:{name}.default.svc.cluster.local:{port}" not in readme:
    fail(f"README.md does not show the client address tcp:{name}.default.svc.cluster.local:{port}")
if failures:
    finish()

# The real demo server with the container's arguments, on a loopback port; the probes'
# commands, run by the real tool, pass; SIGTERM stops it with exit 0; the probe then fails.
server_argv = [demo_server] + ["tcp:127.0.0.1:0" if a == listen[0] else a for a in argv[1:]]
with tempfile.TemporaryDirectory() as tmp:
    log_path = os.path.join(tmp, "server.log")
    with open(log_path, "w") as log:
        server = subprocess.Popen(server_argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        live = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and server.poll() is None:
            if (m := re.search(r"listening on tcp:127\.0\.0\.1:(\d+)", pathlib.Path(log_path).read_text())):
                live = int(m.group(1))
                break
            time.sleep(0.02)
        if live is None:
            fail(f"the demo server with {server_argv[1:]} did not listen: "
                 f"{pathlib.Path(log_path).read_text()}")
            finish()

        def probe_run(cmd):
            run = [tool] + cmd[1:-1] + [f"tcp:127.0.0.1:{live}"]
            return subprocess.run(run, capture_output=True, text=True, timeout=30)

        for kind, cmd in probes.items():
            r = probe_run(cmd)
            if r.returncode != 0:
                fail(f"{kind} failed against the running server (exit {r.returncode}): {r.stderr}")
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=20)
            if rc != 0:
                fail(f"the demo server exited {rc} on SIGTERM: {pathlib.Path(log_path).read_text()}")
        except subprocess.TimeoutExpired:
            fail("the demo server did not stop within 20 s of SIGTERM")
        r = probe_run(probes["livenessProbe"])
        if r.returncode != 1:
            fail(f"livenessProbe against a stopped server exits {r.returncode}, not 1")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
finish()
