#!/usr/bin/env python3
"""Checks the deployment files (Dockerfile, deploy/systemd, deploy/kubernetes) against the built
binary and each other: every flag and environment variable they pass is one `jangar serve` reads,
probes ask /livez and /readyz, containers run unprivileged, the unit is hardened and, where
`systemd-analyze` exists, verifies. Then it breaks copies of the files one way at a time and
checks that each break is caught, so a check that passes everything fails the run.

The binary is $JANGAR_BIN, else target/debug/jangar or target/release/jangar.
Exits 0 when every check passes, 1 otherwise.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# What the server gives its committer to drain after SIGTERM (src/server.rs); stopping must allow more.
COMMITTER_DRAIN_SECONDS = 30
# Read by the log filter (tracing-subscriber), not by clap, so not in --help.
LOG_VARIABLES = {"RUST_LOG", "NO_COLOR"}
WORKLOAD_KINDS = {"StatefulSet": "apps/v1", "Deployment": "apps/v1"}
EXPECTED_KINDS = {"sqlite.yaml": ["Service", "StatefulSet"], "postgres.yaml": ["Service", "Deployment"]}


def find_binary():
    # The binary named is the one to check: no falling back to another build.
    named = os.environ.get("JANGAR_BIN")
    candidates = [named] if named else [ROOT / "target/debug/jangar", ROOT / "target/release/jangar"]
    for path in candidates:
        if Path(path).is_file() and os.access(path, os.X_OK):
            return Path(path).resolve()
    sys.exit(f"no jangar binary at {', '.join(map(str, candidates))}: build it first (cargo build)")


class Interface:
    """What `jangar serve` accepts, read from its --help and from the source."""

    def __init__(self, binary):
        self.binary = binary
        # Without our own settings in the environment, which --help would print as values.
        env = {k: v for k, v in os.environ.items() if not k.startswith("JANGAR_") and k != "POSTGRES_URL"}
        text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, check=True, env=env).stdout
        # `      --listen <LISTEN>` takes a value, `  -h, --help` does not.
        self.flags = {m[0]: bool(m[1]) for m in re.findall(r"^\s+(?:-\w, )?--([a-z][a-z0-9-]*)( <)?", text, re.M)}
        self.env = set(re.findall(r"\[env: ([A-Z0-9_]+)=", text))
        keys = (ROOT / "crates/api/src/auth/keys.rs").read_text()
        self.key_variables = set(re.findall(r'"([A-Z_]+)"', re.search(r"KEY_VARIABLES[^=]*=([^;]*);", keys, re.S)[1]))
        main = (ROOT / "src/main.rs").read_text()
        self.env |= self.key_variables | LOG_VARIABLES | set(re.findall(r'env::var(?:_os)?\("([A-Z_]+)"\)', main))
        assert {"listen", "data-dir", "db"} <= self.flags.keys() and "JANGAR_LISTEN" in self.env, text

    def check_args(self, args, where, problems):
        """`args` follow `jangar serve`: long flags it has, each with its value if it takes one."""
        rest = list(args)
        while rest:
            arg = rest.pop(0)
            name = arg[2:].split("=", 1)[0] if arg.startswith("--") else None
            if name not in self.flags:
                problems.append(f"{where}: {arg!r} is not a flag of `jangar serve`")
                if rest and not rest[0].startswith("-"):
                    rest.pop(0)  # its value, presumably
            elif self.flags[name] and "=" not in arg and (not rest or rest.pop(0).startswith("-")):
                problems.append(f"{where}: {arg} needs a value")
        # clap parses the arguments and stops at --help: a bad value fails here.
        run = subprocess.run([self.binary, "serve", *args, "--help"], capture_output=True, text=True)
        if run.returncode != 0:
            problems.append(f"{where}: `jangar serve` refuses the arguments: {run.stderr.strip()}")

    def check_env(self, names, where, problems):
        for name in names:
            if name not in self.env:
                problems.append(f"{where}: {name} is not a variable jangar reads")


def port_of(listen):
    return int(listen.rsplit(":", 1)[1]) if ":" in listen else int(listen)


def loopback(listen):
    host = listen.rsplit(":", 1)[0] if ":" in listen else ""
    return host in ("", "localhost", "[::1]") or host.startswith("127.")


def parse_dockerfile(text):
    """The instructions, continuation lines joined and comments dropped: [(INSTRUCTION, rest)]."""
    lines, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") and not current:
            continue
        current += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if current.strip():
                word, _, rest = current.strip().partition(" ")
                lines.append((word.upper(), rest.strip()))
            current = ""
    return lines


def check_dockerfile(root, interface, problems):
    """Returns the image's defaults (ENV, uid) for the manifests' checks."""
    where = "Dockerfile"
    steps = parse_dockerfile((root / "Dockerfile").read_text())
    stages = [rest.split() for word, rest in steps if word == "FROM"]
    rust_version = tomllib.loads((root / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    build = re.fullmatch(r"rust:(\d+\.\d+)(?:\.\d+)?-(\w+)", stages[0][0]) if stages else None
    runtime = re.fullmatch(r"debian:(\w+)-slim", stages[-1][0]) if len(stages) == 2 else None
    if not build or not runtime or len(stages[0]) != 3:
        problems.append(f"{where}: expected `FROM rust:X.Y-DEBIAN AS name` then `FROM debian:DEBIAN-slim`")
        return {}, None
    if tuple(map(int, build[1].split("."))) < tuple(map(int, rust_version.split(".")[:2])):
        problems.append(f"{where}: rust:{build[1]} is older than the workspace's rust-version {rust_version}")
    if build[2] != runtime[1]:
        problems.append(f"{where}: built on {build[2]} but run on {runtime[1]}: glibc may not match")
    if not any(w == "RUN" and "cargo build --release --locked" in r for w, r in steps):
        problems.append(f"{where}: no `cargo build --release --locked`")
    env = {}
    for word, rest in steps:
        if word == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(rest))
    interface.check_env(env, where, problems)
    entry = [json.loads(r) for w, r in steps if w == "ENTRYPOINT"]
    copied = [r.split()[-1] for w, r in steps if w == "COPY" and r.startswith(f"--from={stages[0][2]} ")]
    if len(entry) != 1 or entry[0][:1] != copied[-1:] or entry[0][1:2] != ["serve"]:
        problems.append(f"{where}: ENTRYPOINT must be the binary copied from the builder, then `serve`")
    else:
        interface.check_args(entry[0][2:], f"{where} ENTRYPOINT", problems)
    users = [r for w, r in steps if w == "USER"]
    uid = users[-1].split(":")[0] if users else "0"
    if not uid.isdigit() or uid == "0":
        problems.append(f"{where}: USER must be a numeric uid other than 0, got {uid}")
    exposed = [r for w, r in steps if w == "EXPOSE"]
    listen = env.get("JANGAR_LISTEN", "")
    if not listen or loopback(listen) or exposed != [str(port_of(listen))]:
        problems.append(f"{where}: JANGAR_LISTEN={listen!r} must be a non-loopback address on the EXPOSEd port")
    volumes = [r for w, r in steps if w == "VOLUME"]
    if not env.get("JANGAR_DATA_DIR") or volumes != [env.get("JANGAR_DATA_DIR")]:
        problems.append(f"{where}: the VOLUME must be JANGAR_DATA_DIR ({env.get('JANGAR_DATA_DIR')})")
    ignored = (root / ".dockerignore").read_text().split()
    for path in ("target", "jangar-data", ".git"):
        if path not in ignored:
            problems.append(f".dockerignore: {path} must be left out of the build context")
    return env, int(uid) if uid.isdigit() else None


def check_manifest(path, interface, image_env, uid, problems):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = [d.get("kind") for d in docs]
    if path.name in EXPECTED_KINDS and sorted(kinds) != sorted(EXPECTED_KINDS[path.name]):
        problems.append(f"{path.name}: kinds {kinds}, expected {EXPECTED_KINDS[path.name]}")
    services = [d for d in docs if d.get("kind") == "Service"]
    for doc in docs:
        where = f"{path.name} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        expected = WORKLOAD_KINDS.get(doc.get("kind"), "v1" if doc.get("kind") == "Service" else None)
        if doc.get("apiVersion") != expected:
            problems.append(f"{where}: apiVersion {doc.get('apiVersion')!r}, expected {expected!r}")
        if doc.get("kind") in WORKLOAD_KINDS:
            check_workload(doc, where, services, interface, image_env, uid, problems)


def check_workload(doc, where, services, interface, image_env, uid, problems):
    spec, pod = doc["spec"], doc["spec"]["template"]["spec"]
    labels = doc["spec"]["template"]["metadata"]["labels"]
    if not spec["selector"]["matchLabels"].items() <= labels.items():
        problems.append(f"{where}: the selector does not select the pod template")
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    interface.check_env(env, where, problems)
    if "command" in container:
        problems.append(f"{where}: `command` would replace the image's `jangar serve`")
    interface.check_args(container.get("args", []), where, problems)
    listen = env.get("JANGAR_LISTEN", {}).get("value", image_env.get("JANGAR_LISTEN", ""))
    data_dir = env.get("JANGAR_DATA_DIR", {}).get("value", image_env.get("JANGAR_DATA_DIR"))
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    if list(ports.values()) != [port_of(listen)]:
        problems.append(f"{where}: container ports {ports} do not match JANGAR_LISTEN={listen}")
    resolve = lambda port: ports.get(port) if isinstance(port, str) else port
    if not any(s["spec"]["selector"].items() <= labels.items() and resolve(p["targetPort"]) == port_of(listen)
               for s in services for p in s["spec"]["ports"]):
        problems.append(f"{where}: no Service sends traffic to the server's port")
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        get = container.get(probe, {}).get("httpGet", {})
        if (probe != "startupProbe" or probe in container) and get.get("path") != path:
            problems.append(f"{where}: {probe} must GET {path}, not {get.get('path')}")
        elif get and resolve(get.get("port")) != port_of(listen):
            problems.append(f"{where}: {probe} asks port {get.get('port')}, not the server's")
    security, context = pod.get("securityContext", {}), container.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or not isinstance(security.get("fsGroup"), int):
        problems.append(f"{where}: the pod needs runAsNonRoot: true and an fsGroup")
    if security.get("runAsUser", context.get("runAsUser")) != uid:
        problems.append(f"{where}: runAsUser must be the image's uid {uid}")
    if context.get("readOnlyRootFilesystem") is not True or context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: the container needs readOnlyRootFilesystem and no privilege escalation")
    if context.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append(f"{where}: the container must drop ALL capabilities")
    if not {"cpu", "memory"} <= container.get("resources", {}).get("requests", {}).keys():
        problems.append(f"{where}: resource requests need cpu and memory")
    if pod.get("terminationGracePeriodSeconds", 30) <= COMMITTER_DRAIN_SECONDS:
        problems.append(f"{where}: terminationGracePeriodSeconds must exceed the {COMMITTER_DRAIN_SECONDS} s drain")
    # The server refuses a non-loopback listener without a credential: one must always be there.
    secrets = [e.get("valueFrom", {}).get("secretKeyRef") for n, e in env.items() if n in interface.key_variables]
    if not loopback(listen) and not any(ref and ref.get("optional") is not True for ref in secrets):
        problems.append(f"{where}: listening on {listen} needs an admin key from a (non-optional) Secret")
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
    if doc["kind"] == "StatefulSet":
        if spec.get("replicas") != 1:
            problems.append(f"{where}: SQLite has one writer: replicas must be 1, not {spec.get('replicas')}")
        if mounts.get(data_dir) not in claims:
            problems.append(f"{where}: the data directory {data_dir} must be a volumeClaimTemplate")
        if spec.get("serviceName") not in [s["metadata"]["name"] for s in services]:
            problems.append(f"{where}: serviceName must name a Service")
    if doc["kind"] == "Deployment":
        url = env.get("POSTGRES_URL", {}).get("valueFrom", {}).get("secretKeyRef")
        if not url or "--db" in container.get("args", []):
            problems.append(f"{where}: replicas need POSTGRES_URL from a Secret (not --db in the arguments)")
        if any("persistentVolumeClaim" in v for v in pod.get("volumes", [])):
            problems.append(f"{where}: replicas on PostgreSQL keep no state of their own")


def parse_unit(text):
    """{section: {key: [values]}}, keys repeatable as systemd allows."""
    sections, section = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "MemoryDenyWriteExecute": "yes",
    "LockPersonality": "yes", "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "Restart": "on-failure", "KillSignal": "SIGTERM", "StateDirectory": "jangar",
}


def check_unit(root, interface, problems, verify=True):
    path = root / "deploy/systemd/jangar.service"
    where = "jangar.service"
    service = parse_unit(path.read_text()).get("Service", {})
    for key, value in HARDENING.items():
        if service.get(key, [None])[-1] != value:
            problems.append(f"{where}: {key}={value} expected, found {service.get(key)}")
    if "@system-service" not in service.get("SystemCallFilter", [""])[0].split():
        problems.append(f"{where}: SystemCallFilter must allow @system-service only")
    if not service.get("EnvironmentFile"):
        problems.append(f"{where}: no EnvironmentFile")
    stop = service.get("TimeoutStopSec", ["0"])[-1]
    if not re.fullmatch(r"\d+s?", stop) or int(stop.removesuffix("s")) <= COMMITTER_DRAIN_SECONDS:
        problems.append(f"{where}: TimeoutStopSec={stop} must exceed the {COMMITTER_DRAIN_SECONDS} s drain")
    env = dict(item.split("=", 1) for value in service.get("Environment", []) for item in shlex.split(value))
    interface.check_env(env, where, problems)
    if env.get("JANGAR_DATA_DIR") != f"/var/lib/{service.get('StateDirectory', ['?'])[-1]}":
        problems.append(f"{where}: JANGAR_DATA_DIR must be the StateDirectory")
    exec_start = shlex.split(service.get("ExecStart", [""])[-1])
    if exec_start[1:2] != ["serve"] or not exec_start[0].startswith("/"):
        problems.append(f"{where}: ExecStart must be an absolute path to jangar, then `serve`")
        return
    interface.check_args(exec_start[2:], f"{where} ExecStart", problems)
    if verify:
        verify_unit(path, exec_start, interface.binary, problems)


def verify_unit(path, exec_start, binary, problems):
    if not shutil.which("systemd-analyze"):
        print("note: systemd-analyze is not installed: the unit is not verified by systemd")
        return
    with tempfile.TemporaryDirectory() as directory:
        # verify needs ExecStart's binary to exist: point a copy at the built one.
        copy = Path(directory) / path.name
        text = path.read_text().replace(f"ExecStart={exec_start[0]}", f"ExecStart={binary}")
        copy.write_text(text)
        # The exposure threshold is in tenths: at most 2.0 of systemd's 10 ("OK").
        for command in (["verify"], ["security", "--offline=yes", "--threshold=20"]):
            run = subprocess.run(["systemd-analyze", *command, str(copy)], capture_output=True, text=True)
            # Unknown keys and unparsable values are only warnings (exit 0), naming the file.
            warnings = [line for line in run.stderr.splitlines() if path.name in line]
            if run.returncode != 0 or (command == ["verify"] and warnings):
                problems.append(f"systemd-analyze {command[0]}: {run.stdout[-300:]}{run.stderr.strip()}")


def check_all(root, interface, verify=True):
    problems = []
    image_env, uid = check_dockerfile(root, interface, problems)
    manifests = sorted((root / "deploy/kubernetes").glob("*.yaml"))
    if sorted(m.name for m in manifests) != sorted(EXPECTED_KINDS):
        problems.append(f"deploy/kubernetes holds {[m.name for m in manifests]}, expected {sorted(EXPECTED_KINDS)}")
    for manifest in manifests:
        try:
            check_manifest(manifest, interface, image_env, uid, problems)
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
            problems.append(f"{manifest.name}: malformed ({type(e).__name__}: {e})")
    check_unit(root, interface, problems, verify)
    return problems


# Each break, made to a copy of the files, must be reported.
BREAKS = [
    ("deploy/kubernetes/sqlite.yaml", "path: /livez, port: http}\n            periodSeconds: 10",
     "path: /livz, port: http}\n            periodSeconds: 10"),
    ("deploy/kubernetes/postgres.yaml", "path: /readyz", "path: /ready"),
    ("deploy/kubernetes/sqlite.yaml", '"--durability", "full"', '"--durabilty", "full"'),
    ("deploy/kubernetes/sqlite.yaml", '"--durability", "full"', '"--durability", "fast"'),
    ("deploy/kubernetes/sqlite.yaml", "replicas: 1", "replicas: 2"),
    ("deploy/kubernetes/postgres.yaml", "drop: [ALL]", "drop: [NET_RAW]"),
    ("deploy/kubernetes/postgres.yaml", "name: JANGAR_ADMIN_KEY", "name: JANGAR_ADMIN_KEYS"),
    ("Dockerfile", '"serve"]', '"serve", "--no-such-flag"]'),
    ("Dockerfile", "JANGAR_DATA_DIR=/data", "JANGAR_DATADIR=/data"),
    ("Dockerfile", "FROM debian:bookworm-slim", "FROM debian:trixie-slim"),
    ("deploy/systemd/jangar.service", "ProtectSystem=strict", "ProtectSystem=full"),
    ("deploy/systemd/jangar.service", "TimeoutStopSec=45s", "TimeoutStopSec=10s"),
]


def self_test(interface):
    failures = []
    for file, old, new in BREAKS:
        with tempfile.TemporaryDirectory() as directory:
            copy = Path(directory)
            for name in ("Dockerfile", ".dockerignore", "Cargo.toml", "deploy"):
                target = copy / name
                target.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if (ROOT / name).is_dir() else shutil.copy)(ROOT / name, target)
            text = (copy / file).read_text()
            if old not in text:
                failures.append(f"self-test: {old!r} is no longer in {file}: update BREAKS")
                continue
            (copy / file).write_text(text.replace(old, new, 1))
            if not check_all(copy, interface, verify=False):
                failures.append(f"self-test: {file} with {new!r} instead of {old!r} passed")
    return failures


def main():
    interface = Interface(find_binary())
    problems = check_all(ROOT, interface)
    problems += self_test(interface)
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print(f"deploy: Dockerfile, systemd unit and Kubernetes manifests agree with {interface.binary}; "
          f"{len(BREAKS)} deliberate breaks each caught")


if __name__ == "__main__":
    main()
