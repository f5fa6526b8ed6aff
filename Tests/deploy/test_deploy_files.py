"""The deployment files (deploy/, the Dockerfile) against what the node actually reads and serves.

Facts about the node come from the Swift sources, not from this file: the environment variables it
reads, its default ports, its health route and its drain durations. A deployment that sets a
variable the node ignores, publishes a port it does not listen on, or probes the wrong path fails
here with the file and the name.
"""

import base64
import json
import re
import shlex
from pathlib import Path

import pytest

try:
    import yaml
except ImportError:  # pragma: no cover - a venv made before pyyaml joined SDK_PACKAGES
    pytest.fail(
        "PyYAML is missing: `make venv` installs it into a new venv (rm .venv/.installed to refresh one)",
        pytrace=False,
    )

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "Sources"
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_FILE = DEPLOY / "bifrost.json"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"

# The seed's "Deployment Patterns".
SEED_COMPOSE = {
    "bifrost-node-1": {"PEERS": "bifrost-node-2:8080,bifrost-node-3:8080", "api": "8080", "gossip": "7946"},
    "bifrost-node-2": {"PEERS": "bifrost-node-1:8080,bifrost-node-3:8080", "api": "8081", "gossip": "7947"},
    "bifrost-node-3": {"PEERS": "bifrost-node-1:8080,bifrost-node-2:8080", "api": "8082", "gossip": "7948"},
}
SEED_STATEFULSET_PEERS = (
    "bifrost-cluster-0.bifrost-cluster:8080,bifrost-cluster-1.bifrost-cluster:8080,"
    "bifrost-cluster-2.bifrost-cluster:8080"
)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---------------------------------------------------------------------------------------------
# What the node reads, listens on and serves, from the sources.


def swift_files():
    return sorted(SOURCES.rglob("*.swift"))


# `env["NAME"]` (BifrostConfig.apply(environment:)), `ProcessInfo.processInfo.environment["NAME"]`
# (Node.advertiseHost), and any other literal subscript of an environment dictionary.
ENV_SUBSCRIPT = re.compile(r'\b(?:env|environment)\[\s*"([A-Z][A-Z0-9_]*)"\s*\]')


def source_environment_variables() -> dict:
    """Variable name -> the source files that read it."""
    found = {}
    for path in swift_files():
        for name in ENV_SUBSCRIPT.findall(read(path)):
            found.setdefault(name, set()).add(rel(path))
    return found


def env_references(value) -> set:
    """`env.NAME` secret references anywhere in a configuration document."""
    if isinstance(value, str):
        return {value[4:]} if value.startswith("env.") and len(value) > 4 else set()
    if isinstance(value, dict):
        return set().union(*(env_references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(env_references(v) for v in value)) if value else set()
    return set()


def deploy_config() -> dict:
    return json.loads(read(CONFIG_FILE))


def variables_the_node_reads() -> set:
    return set(source_environment_variables()) | env_references(deploy_config())


def bifrost_config_source() -> str:
    return read(SOURCES / "Gateway" / "Config" / "BifrostConfig.swift")


def default_api_port() -> int:
    m = re.search(r'bindAddress\s*=\s*HostPort\(host:\s*"[^"]*",\s*port:\s*(\d+)\)', bifrost_config_source())
    assert m, "cannot find the default bind address (bindAddress = HostPort(...)) in BifrostConfig.swift"
    return int(m.group(1))


def default_gossip_port() -> int:
    m = re.search(r"struct Gossip\b.*?\bvar port: Int = (\d+)", bifrost_config_source(), re.S)
    assert m, "cannot find the default gossip port (struct Gossip { var port: Int = N }) in BifrostConfig.swift"
    return int(m.group(1))


def swift_duration_seconds(text: str) -> float:
    m = re.fullmatch(r"\.(seconds|milliseconds)\(([\d.]+)\)", text.strip())
    assert m, f"unexpected Swift duration {text!r}"
    return float(m.group(2)) * (1 if m.group(1) == "seconds" else 1e-3)


def default_drain_seconds(field: str) -> float:
    m = re.search(rf"var {field}: Duration = (\.[a-z]+\([\d.]+\))", bifrost_config_source())
    assert m, f"cannot find the default of {field} in BifrostConfig.swift"
    return swift_duration_seconds(m.group(1))


def go_duration_seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = re.findall(r"([\d.]+)(ms|us|µs|ns|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text.strip(), f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def drain_seconds(config: dict) -> float:
    """drain_delay + drain_timeout in force with this configuration document."""
    failover = config.get("cluster", {}).get("failover", {})
    total = 0.0
    for key, field in (("drain_delay", "drainDelay"), ("drain_timeout", "drainTimeout")):
        total += go_duration_seconds(failover[key]) if key in failover else default_drain_seconds(field)
    return total


def host_port(text: str):
    host, _, port = text.rpartition(":")
    assert host and port.isdigit(), f"expected host:port, got {text!r}"
    return host, int(port)


def node_ports(config: dict, env: dict) -> dict:
    """The ports a node listens on: defaults, then the config document, then the environment
    (the order `bifrost serve` applies them). Values are sets of lowercase protocols."""
    api, gossip = default_api_port(), default_gossip_port()
    cluster = config.get("cluster", {})
    if "bind_address" in cluster:
        api = host_port(cluster["bind_address"])[1]
    if "port" in cluster.get("gossip", {}):
        gossip = int(cluster["gossip"]["port"])
    if env.get("BIND_ADDRESS"):
        api = host_port(env["BIND_ADDRESS"])[1]
    if env.get("GOSSIP_PORT"):
        gossip = int(env["GOSSIP_PORT"])
    return {"api": (api, {"tcp"}), "gossip": (gossip, gossip_protocols())}


def gossip_protocols() -> set:
    """Gossip (GossipService, UDP) and event sync (SyncService, TCP) both bind cluster.gossip.port."""
    node = read(SOURCES / "bifrost" / "Node.swift")
    protocols = set()
    for service, path, bootstrap, protocol in (
        ("GossipService(", SOURCES / "Replication" / "Membership" / "GossipService.swift", "DatagramBootstrap", "udp"),
        ("SyncService(", SOURCES / "Replication" / "Sync" / "SyncService.swift", "ServerBootstrap", "tcp"),
    ):
        at = node.find(service)
        assert at >= 0, f"Node.swift no longer creates {service[:-1]}"
        if "port: cluster.gossip.port" in node[at : at + 1200] and bootstrap in read(path):
            protocols.add(protocol)
    assert protocols, "cannot tell from the sources which protocols use the gossip port"
    return protocols


def health_path() -> str:
    routes = read(SOURCES / "Gateway" / "Routes" / "ClusterRoutes.swift")
    m = re.search(r'router\.get\("(health[^"]*)"\)', routes)
    assert m, "ClusterRoutes.swift no longer registers a health route"
    return "/" + m.group(1)


def expected_listeners(config: dict, env: dict) -> set:
    """{(port, protocol)} the node listens on."""
    out = set()
    for port, protocols in node_ports(config, env).values():
        out |= {(port, p) for p in protocols}
    return out


# ---------------------------------------------------------------------------------------------
# The files.


def dockerfile_instructions():
    """(instruction, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in read(DOCKERFILE).splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not current and not stripped):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        lines.append((word.upper(), rest.strip()))
        current = ""
    return lines


def env_instruction(args: str) -> dict:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy `ENV NAME value`
        return {words[0]: " ".join(words[1:])}
    return dict(word.partition("=")[::2] for word in words)


def dockerfile_env() -> dict:
    """ENV of every stage."""
    env = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            env.update(env_instruction(args))
    return env


def dockerfile_runtime_env() -> dict:
    """ENV of the last stage: the image that runs."""
    env = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "FROM":
            env = {}
        elif instruction == "ENV":
            env.update(env_instruction(args))
    return env


def dockerfile_exposed() -> set:
    out = set()
    for instruction, args in dockerfile_instructions():
        if instruction == "EXPOSE":
            for word in args.split():
                port, _, protocol = word.partition("/")
                out.add((int(port), (protocol or "tcp").lower()))
    return out


def data_dir(env: dict) -> str:
    value = env.get("DATA_DIR") or dockerfile_runtime_env().get("DATA_DIR")
    assert value, "DATA_DIR is set neither in the deployment nor in the Dockerfile"
    return value


def compose() -> dict:
    return yaml.safe_load(read(COMPOSE_FILE))


def compose_env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def compose_ports(service: dict):
    """[(published, target, protocol)]"""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append((str(entry.get("published", "")), int(entry["target"]), entry.get("protocol", "tcp").lower()))
            continue
        spec, _, protocol = str(entry).partition("/")
        parts = spec.split(":")
        target = int(parts[-1])
        published = parts[-2] if len(parts) > 1 else ""
        out.append((published, target, (protocol or "tcp").lower()))
    return out


def compose_mounts(service: dict) -> dict:
    """container path -> source"""
    out = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            out[entry["target"]] = entry.get("source", "")
        else:
            parts = str(entry).split(":")
            out[parts[1]] = parts[0]
    return out


def compose_command(service: dict) -> list:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def kubernetes_documents() -> list:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for doc in yaml.safe_load_all(read(path)):
            if doc:
                docs.append((path, doc))
    return docs


def kubernetes_objects(kind: str) -> dict:
    return {d["metadata"]["name"]: d for _, d in kubernetes_documents() if d.get("kind") == kind}


def statefulset() -> dict:
    sets = kubernetes_objects("StatefulSet")
    assert len(sets) == 1, f"expected one StatefulSet in {rel(KUBERNETES)}, found {sorted(sets)}"
    return next(iter(sets.values()))


def bifrost_container(sts: dict) -> dict:
    containers = sts["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the StatefulSet should run one container, the node"
    return containers[0]


def statefulset_env_entries(container: dict) -> list:
    return container.get("env", [])


def expand_kubernetes(value: str, env: dict) -> str:
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def statefulset_env(sts: dict, pod_name: str) -> dict:
    """Literal values and fieldRef metadata.name, expanded as the kubelet would for `pod_name`."""
    env = {}
    for entry in statefulset_env_entries(bifrost_container(sts)):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand_kubernetes(str(entry["value"]), env)
        elif entry.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[name] = pod_name
        else:
            env[name] = None  # from a Secret or elsewhere
    return env


def config_map_document(sts: dict, container: dict):
    """(mount path, ConfigMap data key, parsed JSON) of the file given to --config, or None."""
    args = [str(a) for a in container.get("command", []) + container.get("args", [])]
    if "--config" not in args:
        return None
    path = args[args.index("--config") + 1]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = volumes.get(mount["name"], {})
            assert "configMap" in volume, f"--config {path} is mounted from {mount['name']}, not a ConfigMap"
            key = mount.get("subPath") or path[len(prefix) :]
            maps = kubernetes_objects("ConfigMap")
            name = volume["configMap"]["name"]
            assert name in maps, f"ConfigMap {name} is not defined in {rel(KUBERNETES)}"
            assert key in maps[name].get("data", {}), f"ConfigMap {name} has no key {key}"
            return path, key, json.loads(maps[name]["data"][key])
    pytest.fail(f"--config {path} is not under any volumeMount of the StatefulSet")


def statefulset_config(sts: dict) -> dict:
    found = config_map_document(sts, bifrost_container(sts))
    return found[2] if found else {}


def compose_config(service: dict) -> dict:
    command = compose_command(service)
    if "--config" not in command:
        return {}
    path = command[command.index("--config") + 1]
    source = compose_mounts(service).get(path)
    assert source, f"compose: --config {path} is not a mounted file"
    return json.loads(read((COMPOSE_FILE.parent / source).resolve()))


def unknown_variables(names, where: str):
    known = variables_the_node_reads()
    unknown = sorted(set(names) - known)
    return (
        f"{where} sets {', '.join(unknown)}, which the node never reads. The node reads "
        f"{', '.join(sorted(known))} (environment subscripts in Sources/ and env.NAME references in "
        f"{rel(CONFIG_FILE)}). Remove the variable or teach the node to read it."
        if unknown
        else None
    )


# ---------------------------------------------------------------------------------------------
# The facts themselves.


def test_sources_yield_the_seed_variables_and_defaults():
    found = source_environment_variables()
    for name in ("CLUSTER_ENABLED", "NODE_ID", "PEERS"):
        assert name in found, f"{name} (a seed override) is not read anywhere in Sources/; found {sorted(found)}"
    assert default_api_port() != default_gossip_port()
    assert health_path() == "/health"


def test_documented_defaults_and_variables_match_the_sources():
    docs = read(ROOT / "docs" / "CONFIGURATION.md")
    assert f"| `bind_address` | `0.0.0.0:{default_api_port()}` |" in docs, "docs/CONFIGURATION.md bind_address default"
    assert f"| `gossip.port` | `{default_gossip_port()}` |" in docs, "docs/CONFIGURATION.md gossip.port default"
    section = docs.split("## Environment overrides", 1)
    assert len(section) == 2, "docs/CONFIGURATION.md has no 'Environment overrides' section"
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", section[1], re.M))
    read_by_node = set(source_environment_variables())
    assert documented <= read_by_node, f"documented but not read by the node: {sorted(documented - read_by_node)}"
    operations = read(ROOT / "docs" / "OPERATIONS.md")
    undocumented = sorted(n for n in read_by_node if n not in docs and n not in operations)
    assert not undocumented, f"read by the node but in neither CONFIGURATION.md nor OPERATIONS.md: {undocumented}"


# ---------------------------------------------------------------------------------------------
# Dockerfile


def test_dockerfile_env_is_read_by_the_node():
    problem = unknown_variables(dockerfile_env(), "Dockerfile ENV")
    assert problem is None, problem


def test_dockerfile_exposes_exactly_the_node_ports():
    expected = expected_listeners({}, dockerfile_runtime_env())
    assert dockerfile_exposed() == expected, f"EXPOSE {sorted(dockerfile_exposed())}, node listens on {sorted(expected)}"


def test_dockerfile_healthcheck_hits_health_on_the_api_port():
    api = node_ports({}, dockerfile_runtime_env())["api"][0]
    checks = [args for instruction, args in dockerfile_instructions() if instruction == "HEALTHCHECK"]
    assert checks, "Dockerfile has no HEALTHCHECK"
    assert f":{api}{health_path()}" in checks[-1], f"HEALTHCHECK does not request {health_path()} on port {api}"


# ---------------------------------------------------------------------------------------------
# docker compose


def test_compose_has_the_seeds_three_nodes():
    services = compose()["services"]
    assert sorted(services) == sorted(SEED_COMPOSE)
    for name, seed in SEED_COMPOSE.items():
        env = compose_env(services[name])
        assert env.get("CLUSTER_ENABLED") == "true", name
        assert env.get("NODE_ID") == name, name
        assert env.get("PEERS") == seed["PEERS"], name
        assert services[name].get("image") == "bifrost:latest", name
        build = (COMPOSE_FILE.parent / str(services[name].get("build"))).resolve()
        assert build == ROOT, f"{name}: build: .. (the repository, where the Dockerfile is)"


def test_compose_env_is_read_by_the_node():
    for name, service in compose()["services"].items():
        problem = unknown_variables(compose_env(service), f"{rel(COMPOSE_FILE)} service {name}")
        assert problem is None, problem


def test_compose_env_example_is_read_by_the_node():
    names = re.findall(r"^([A-Z][A-Z0-9_]*)=", read(DEPLOY / ".env.example"), re.M)
    assert names
    problem = unknown_variables(names, "deploy/.env.example")
    assert problem is None, problem


def test_compose_requires_the_cluster_key():
    for name, service in compose()["services"].items():
        value = compose_env(service).get("BIFROST_CLUSTER_KEY", "")
        assert value.startswith("${BIFROST_CLUSTER_KEY:?"), f"{name}: use ${{BIFROST_CLUSTER_KEY:?message}}"


def test_compose_provides_every_env_reference_of_its_config():
    for name, service in compose()["services"].items():
        missing = env_references(compose_config(service)) - set(compose_env(service))
        assert not missing, f"{name}: the config reads {sorted(missing)} but the service does not set them"


def test_compose_ports_are_the_node_ports():
    for name, service in compose()["services"].items():
        env = compose_env(service)
        expected = expected_listeners(compose_config(service), env)
        ports = compose_ports(service)
        targets = {(target, protocol) for _, target, protocol in ports}
        assert targets == expected, f"{name}: container ports {sorted(targets)}, node listens on {sorted(expected)}"
        ports_in_force = node_ports(compose_config(service), env)
        api, gossip = ports_in_force["api"][0], ports_in_force["gossip"][0]
        seed = SEED_COMPOSE[name]
        published = {(p, t, proto) for p, t, proto in ports}
        assert (seed["api"], api, "tcp") in published, f"{name}: API not published on {seed['api']}"
        for proto in gossip_protocols():
            assert (seed["gossip"], gossip, proto) in published, f"{name}: gossip/{proto} not on {seed['gossip']}"


def test_compose_peers_and_advertised_names_resolve_to_services():
    services = compose()["services"]
    for name, service in services.items():
        env = compose_env(service)
        api = node_ports(compose_config(service), env)["api"][0]
        for peer in env["PEERS"].split(","):
            host, port = host_port(peer)
            assert host in services and host != name, f"{name}: peer {peer} is not another service"
            assert port == api, f"{name}: peer {peer} is not at the API port {api}"
        if "ADVERTISE_HOST" in env:
            assert env["ADVERTISE_HOST"] == name, f"{name}: ADVERTISE_HOST should be the service name"


def test_compose_healthcheck_hits_health_on_the_api_port():
    for name, service in compose()["services"].items():
        api = node_ports(compose_config(service), compose_env(service))["api"][0]
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name}: no healthcheck"
        text = " ".join(test) if isinstance(test, list) else str(test)
        assert re.search(rf"//(127\.0\.0\.1|localhost):{api}{re.escape(health_path())}\b", text), (
            f"{name}: healthcheck {text!r} does not request {health_path()} on port {api}"
        )


def test_compose_gives_each_node_its_own_data_volume():
    spec = compose()
    seen = set()
    for name, service in spec["services"].items():
        mounts = compose_mounts(service)
        path = data_dir(compose_env(service))
        assert path in mounts, f"{name}: nothing mounted at DATA_DIR {path}"
        volume = mounts[path]
        assert volume in (spec.get("volumes") or {}), f"{name}: {volume} is not a named volume"
        assert volume not in seen, f"{name}: data volume {volume} is shared"
        seen.add(volume)


def test_compose_stop_grace_covers_a_drain():
    for name, service in compose()["services"].items():
        grace = service.get("stop_grace_period")
        assert grace, f"{name}: no stop_grace_period (Docker's default is 10s)"
        needed = drain_seconds(compose_config(service))
        assert go_duration_seconds(str(grace)) > needed, f"{name}: stop_grace_period {grace} <= drain {needed}s"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load(read(KUBERNETES / "kustomization.yaml"))
    manifests = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests


def test_statefulset_is_the_seeds():
    sts = statefulset()
    spec = sts["spec"]
    assert spec["replicas"] == 3
    labels = spec["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items())
    env = statefulset_env(sts, "bifrost-cluster-0")
    assert env.get("CLUSTER_ENABLED") == "true"
    assert env.get("NODE_ID") == "bifrost-cluster-0", "NODE_ID must come from metadata.name"
    assert env.get("PEERS") == SEED_STATEFULSET_PEERS


def test_statefulset_env_is_read_by_the_node():
    names = [e["name"] for e in statefulset_env_entries(bifrost_container(statefulset()))]
    assert len(names) == len(set(names)), "an environment variable is set twice"
    problem = unknown_variables(names, f"{rel(KUBERNETES)} StatefulSet")
    assert problem is None, problem


def test_statefulset_env_references_are_defined_earlier():
    defined = set()
    for entry in statefulset_env_entries(bifrost_container(statefulset())):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(entry.get("value", ""))):
            assert ref in defined, f"{entry['name']} refers to $({ref}), which is not defined before it"
        defined.add(entry["name"])


def test_statefulset_secrets_come_from_the_secret():
    secrets = kubernetes_objects("Secret")
    by_name = {e["name"]: e for e in statefulset_env_entries(bifrost_container(statefulset()))}
    key = by_name.get("BIFROST_CLUSTER_KEY", {})
    ref = key.get("valueFrom", {}).get("secretKeyRef")
    assert ref, "BIFROST_CLUSTER_KEY must come from a secretKeyRef, never a literal"
    for entry in by_name.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if not ref:
            continue
        secret = secrets.get(ref["name"])
        assert secret, f"{entry['name']}: Secret {ref['name']} is not defined in {rel(KUBERNETES)}"
        data = {**secret.get("stringData", {}), **secret.get("data", {})}
        assert ref["key"] in data, f"{entry['name']}: Secret {ref['name']} has no key {ref['key']}"


def test_secret_holds_no_real_cluster_key():
    for secret in kubernetes_objects("Secret").values():
        value = secret.get("stringData", {}).get("BIFROST_CLUSTER_KEY")
        if value is None:
            continue
        try:
            decoded = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        assert len(decoded) != 32, "secret.yaml holds a usable cluster key; keep a placeholder in the repository"


def test_statefulset_provides_every_env_reference_of_its_config():
    sts = statefulset()
    missing = env_references(statefulset_config(sts)) - set(statefulset_env(sts, "bifrost-cluster-0"))
    assert not missing, f"the config reads {sorted(missing)} but the StatefulSet does not set them"


def test_configmap_matches_deploy_config():
    found = config_map_document(statefulset(), bifrost_container(statefulset()))
    assert found, "the StatefulSet does not pass --config"
    path, key, document = found
    assert document == deploy_config(), f"ConfigMap key {key} ({path}) differs from {rel(CONFIG_FILE)}"


def test_statefulset_container_ports_are_the_node_ports():
    sts = statefulset()
    container = bifrost_container(sts)
    expected = expected_listeners(statefulset_config(sts), statefulset_env(sts, "bifrost-cluster-0"))
    ports = {(p["containerPort"], p.get("protocol", "TCP").lower()) for p in container["ports"]}
    assert ports == expected, f"containerPorts {sorted(ports)}, node listens on {sorted(expected)}"
    names = [p.get("name") for p in container["ports"]]
    assert "api" in names and "gossip" in names, "ports named api and gossip, as in the seed"


def resolve_container_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    for p in container["ports"]:
        if p.get("name") == port:
            return p["containerPort"]
    pytest.fail(f"no container port named {port}")


def test_probes_hit_health_on_the_api_port():
    sts = statefulset()
    container = bifrost_container(sts)
    api = node_ports(statefulset_config(sts), statefulset_env(sts, "bifrost-cluster-0"))["api"][0]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        if probe == "startupProbe" and probe not in container:
            continue
        get = container.get(probe, {}).get("httpGet")
        assert get, f"{probe} must be an httpGet"
        assert get["path"] == health_path(), f"{probe} path {get['path']}"
        port = resolve_container_port(container, get["port"])
        assert port == api, f"{probe} port {get['port']} is not the API port {api}"


def test_headless_service_matches_the_statefulset():
    sts = statefulset()
    services = kubernetes_objects("Service")
    service = services.get(sts["spec"]["serviceName"])
    assert service, f"serviceName {sts['spec']['serviceName']} is not a Service in {rel(KUBERNETES)}"
    assert service["metadata"]["name"] == "bifrost-cluster"
    spec = service["spec"]
    assert spec.get("clusterIP") == "None", "the StatefulSet's Service must be headless"
    assert spec.get("publishNotReadyAddresses") is True, "peers must resolve each other before they are Ready"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in spec["selector"].items())
    container = bifrost_container(sts)
    expected = expected_listeners(statefulset_config(sts), statefulset_env(sts, "bifrost-cluster-0"))
    ports = set()
    for p in spec["ports"]:
        target = resolve_container_port(container, p.get("targetPort", p["port"]))
        assert target == p["port"], f"service port {p['name']} maps {p['port']} to {target}"
        ports.add((p["port"], p.get("protocol", "TCP").lower()))
    assert ports == expected, f"service ports {sorted(ports)}, node listens on {sorted(expected)}"


def test_peers_and_advertised_host_are_the_pods_stable_names():
    sts = statefulset()
    replicas, service, name = sts["spec"]["replicas"], sts["spec"]["serviceName"], sts["metadata"]["name"]
    env0 = statefulset_env(sts, f"{name}-0")
    api = node_ports(statefulset_config(sts), env0)["api"][0]
    expected = [f"{name}-{i}.{service}" for i in range(replicas)]
    hosts = [host_port(p) for p in env0["PEERS"].split(",")]
    assert [h for h, _ in hosts] == expected, f"PEERS hosts {hosts}, pods are {expected}"
    assert all(port == api for _, port in hosts), f"PEERS must name the API port {api}"
    for i in range(replicas):
        env = statefulset_env(sts, f"{name}-{i}")
        # The node drops the seed equal to its own advertised gossip address, so the forms must match.
        assert env.get("ADVERTISE_HOST") == expected[i], f"pod {i}: ADVERTISE_HOST {env.get('ADVERTISE_HOST')}"


def test_statefulset_mounts_a_volume_claim_at_data_dir():
    sts = statefulset()
    container = bifrost_container(sts)
    path = data_dir(statefulset_env(sts, "bifrost-cluster-0"))
    claims = {c["metadata"]["name"] for c in sts["spec"].get("volumeClaimTemplates", [])}
    assert claims, "no volumeClaimTemplates"
    mounted = {m["name"] for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == path.rstrip("/")}
    assert mounted & claims, f"no volumeClaimTemplate is mounted at DATA_DIR {path}"


def test_termination_grace_covers_a_drain():
    sts = statefulset()
    pod = sts["spec"]["template"]["spec"]
    container = bifrost_container(sts)
    pre_stop = 0.0
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if command[:1] == ["sleep"]:
        pre_stop = float(command[1])
    needed = pre_stop + drain_seconds(statefulset_config(sts))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    assert grace > needed, f"terminationGracePeriodSeconds {grace} <= preStop {pre_stop}s + drain"


def test_liveness_outlasts_a_drain():
    """/health is 503 while draining; liveness must not restart a node in the middle of one."""
    sts = statefulset()
    probe = bifrost_container(sts)["livenessProbe"]
    window = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
    assert window > drain_seconds(statefulset_config(sts))


# ---------------------------------------------------------------------------------------------
# docs/OPERATIONS.md names only flags and metrics that exist.


def kebab(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def swift_flags(paths) -> set:
    flags = {"--help"}
    for path in paths:
        text = read(path)
        for m in re.finditer(r"@(Option|Flag)\b", text):
            decl = re.search(r"\bvar\s+(\w+)", text[m.end() :])
            if not decl:
                continue
            between = text[m.end() : m.end() + decl.start()]
            custom = re.search(r'customLong\("([^"]+)"\)', between)
            flags.add("--" + (custom.group(1) if custom else kebab(decl.group(1))))
    return flags


# A command as written in the docs -> the sources that declare its options.
TOOLS = {
    "bifrost-dump": [ROOT / "tools" / "bifrost-dump" / "main.swift"],
    "bifrost-replay": [ROOT / "tools" / "bifrost-replay" / "main.swift"],
    "bifrost-config": sorted((ROOT / "tools" / "bifrost-config").glob("*.swift")),
    "bifrost serve": sorted((SOURCES / "bifrost").glob("*.swift")),
    "bifrost keygen": sorted((SOURCES / "bifrost").glob("*.swift")),
}


def test_operations_doc_uses_existing_tool_flags():
    doc = read(ROOT / "docs" / "OPERATIONS.md")
    # Commands in code blocks (with continuation lines joined) and in backticks.
    text = re.sub(r"\\\n\s*", " ", doc)
    problems = []
    for tool, paths in TOOLS.items():
        known = swift_flags(paths)
        for m in re.finditer(rf"(?<![\w/.:=-]){re.escape(tool)}(?![\w-])([^\n`|]*)", text):
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m.group(1)):
                if flag not in known:
                    problems.append(f"{tool} {flag}")
    assert not problems, f"docs/OPERATIONS.md uses flags the tools do not have: {sorted(set(problems))}"


def test_operations_doc_names_existing_metrics():
    doc = read(ROOT / "docs" / "OPERATIONS.md")
    sources = "\n".join(read(p) for p in swift_files())
    missing = sorted(
        name
        for name in set(re.findall(r"`(bifrost_[a-z0-9_]+)", doc))
        if f'"{re.sub(r"_(bucket|sum|count)$", "", name)}"' not in sources
    )
    assert not missing, f"docs/OPERATIONS.md names metrics no source defines: {missing}"
