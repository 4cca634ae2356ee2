"""The deployment kit in ``deploy/`` says only what syncer understands.

No container runtime runs here, so the kit is checked by reading it: every syncer command line
(Dockerfile ENTRYPOINT + CMD, compose ``command:``, Kubernetes ``command``/``args``, systemd
``ExecStart``) must parse with syncer's own parser, every environment variable the kit gives
syncer must be one syncer reads (collected from its source, not listed here by hand), the health
checks must ask ``/healthz`` on the port syncer is told to serve it on, and every configuration
file in the kit must load with syncer's own loader.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import syncer
from syncer.cli import build_parser
from syncer.commands import check_jobs
from syncer.configfile import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PACKAGE = Path(syncer.__file__).resolve().parent

# Not syncer's: the process environment every program reads.
PROCESS = {"PATH"}


# --- what syncer reads ---------------------------------------------------------------------------


def _module_constants(tree: ast.Module) -> dict[str, str]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _reads_environ(node: ast.expr) -> bool:
    """``os.environ``, ``environ``, ``ctx.environ``: anything named environ."""
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return name == "environ"


def _env_arguments(tree: ast.Module) -> Iterator[ast.expr]:
    """The first argument of every environment look-up in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("get", "pop"):
                if _reads_environ(func.value):
                    yield node.args[0]
            else:
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("getenv", "env_int"):
                    yield node.args[0]
        elif isinstance(node, ast.Subscript) and _reads_environ(node.value):
            yield node.slice


def variables_syncer_reads() -> set[str]:
    """Every environment variable named in syncer's source where the environment is read."""
    trees = [ast.parse(path.read_text()) for path in sorted(PACKAGE.rglob("*.py"))]
    constants: dict[str, str] = {}
    for tree in trees:
        constants.update(_module_constants(tree))
    # A constant named *_ENV names a variable read through it (e.g. the database URL's).
    names = {value for name, value in constants.items() if name.endswith("_ENV")}
    for tree in trees:
        for arg in _env_arguments(tree):
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                names.add(constants[arg.id])
    return names


def variables_configured(config_text: str) -> set[str]:
    """The variables a configuration names in its ``*_env`` keys: syncer reads those too."""
    return set(re.findall(r'^\s*\w+_env\s*=\s*"([A-Z][A-Z0-9_]*)"', config_text, re.MULTILINE))


def unknown_variables(names: set[str], config_texts: list[str]) -> set[str]:
    known = variables_syncer_reads() | PROCESS
    for text in config_texts:
        known |= variables_configured(text)
    return names - known


def parses(argv: list[str]) -> Any:
    """``argv`` (after ``syncer``) as syncer's own parser reads it; a failure names the line."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`syncer {shlex.join(argv)}` does not parse with syncer's parser")


def syncer_argv(words: list[str]) -> list[str]:
    """The arguments after the program, which must be syncer (on PATH or by its full path)."""
    assert words, "an empty command line"
    assert Path(words[0]).name == "syncer", f"{words} does not run syncer"
    return words[1:]


# --- the kit, read ------------------------------------------------------------------------------


@dataclass
class Dockerfile:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    healthcheck: list[str]
    user: str | None
    base_images: list[str]


def read_dockerfile(path: Path) -> Dockerfile:
    """The instructions of the final stage that matter here (exec forms are JSON arrays)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    instructions = [
        line.strip().split(None, 1)
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    bases, env, entrypoint, cmd, health, user = [], {}, [], [], [], None
    for word, rest in instructions:
        word = word.upper()
        if word == "FROM":
            bases.append(rest.split()[0])
            env, entrypoint, cmd, health, user = {}, [], [], [], None  # a new stage
        elif word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
        elif word == "ENTRYPOINT":
            entrypoint = json.loads(rest)
        elif word == "CMD":
            cmd = json.loads(rest)
        elif word == "HEALTHCHECK":
            health = json.loads(rest[rest.index("CMD") + 3 :])
        elif word == "USER":
            user = rest.strip()
    return Dockerfile(entrypoint, cmd, env, health, user, bases)


def read_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def read_unit(path: Path) -> list[tuple[str, str]]:
    """``Key=value`` lines of a systemd unit, in order (keys may repeat)."""
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def kubernetes_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return list(spec.get("template", {}).get("spec", {}).get("containers", []))


def kit_configs() -> list[str]:
    """Every syncer configuration in the kit: the TOML files and those inside ConfigMaps."""
    texts = [path.read_text() for path in sorted(DEPLOY.rglob("*.toml"))]
    for path in sorted(DEPLOY.rglob("*.yaml")):
        for doc in read_yaml(path):
            if doc.get("kind") == "ConfigMap":
                texts += [v for k, v in doc.get("data", {}).items() if k.endswith(".toml")]
    return texts


def compose_file() -> dict[str, Any]:
    (doc,) = read_yaml(DEPLOY / "compose.yaml")
    assert isinstance(doc, dict)
    return doc


def compose_syncer_services() -> dict[str, dict[str, Any]]:
    services = compose_file()["services"]
    return {n: s for n, s in services.items() if "syncer" in str(s.get("image", ""))}


# --- the checks ----------------------------------------------------------------------------------


def test_the_collector_finds_what_syncer_reads_and_flags_what_it_does_not() -> None:
    read = variables_syncer_reads()
    for name in ("SYNCER_DATABASE_URL", "SYNCER_CONFIG", "SYNCER_METRICS_PORT", "SYNCER_HOME"):
        assert name in read
    config = 'api_key_env = "ACME_KEY"\n'
    assert unknown_variables({"ACME_KEY", "SYNCER_CONFIG"}, [config]) == set()
    assert unknown_variables({"SYNCER_METRICS_PROT", "ACME_KEY"}, []) == {
        "SYNCER_METRICS_PROT",
        "ACME_KEY",
    }


def test_every_file_of_the_kit_is_checked_here() -> None:
    checked = {"Dockerfile", ".dockerignore", ".service", ".yaml", ".toml", ".example"}
    for path in DEPLOY.rglob("*"):
        if path.is_file():
            assert path.name in checked or path.suffix in checked, f"{path} is checked by nothing"


def test_every_configuration_of_the_kit_loads_with_syncers_loader(tmp_path: Path) -> None:
    configs = kit_configs()
    assert len(configs) >= 2
    for index, text in enumerate(configs):
        path = tmp_path / f"schedules-{index}.toml"
        path.write_text(text)
        environ = {name: "set-by-the-test" for name in variables_configured(text)}
        environ["SYNCER_DATABASE_URL"] = "postgresql://syncer@db.example.com/syncer"
        settings = load_settings(path, environ)  # raises ConfigError naming every problem
        check_jobs(settings)
        assert settings.jobs, f"configuration {index} has no [[jobs]] for `syncer run`"


def test_the_dockerfile_runs_the_daemon_as_a_non_root_user_with_a_healthcheck() -> None:
    image = read_dockerfile(DEPLOY / "Dockerfile")
    assert image.base_images
    assert all("slim" in base for base in image.base_images)
    assert image.user not in (None, "root", "0")
    args = parses(syncer_argv(image.entrypoint + image.cmd))
    assert args.command == "run"
    assert not args.once
    assert unknown_variables(set(image.env), kit_configs()) == set()
    assert image.env["SYNCER_METRICS_HOST"] == "0.0.0.0"
    # The variable is --metrics-port's default: the daemon serves /healthz on that port.
    port = image.env["SYNCER_METRICS_PORT"]
    assert re.fullmatch(r"\d+", port)
    assert f"127.0.0.1:{port}/healthz" in " ".join(image.healthcheck)


def test_the_build_context_holds_what_the_dockerfile_copies_and_no_more() -> None:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    copied = set()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied |= {w.rstrip("/") for w in words[1:-1]}
    patterns = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert "**" in patterns  # everything else (.venv, .git, benchmarks) stays out
    assert copied == allowed


def test_compose_runs_postgres_two_daemon_replicas_and_the_webhook_server() -> None:
    compose = compose_file()
    postgres = compose["services"]["postgres"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"], "PostgreSQL's data is not on a named volume"
    services = compose_syncer_services()
    commands = {}
    for name, service in services.items():
        args = parses(service["command"])
        commands[args.command] = (name, service, args)
        assert unknown_variables(set(service["environment"]), kit_configs()) == set(), name
    name, daemon, _ = commands["run"]
    assert daemon["deploy"]["replicas"] >= 2
    _, webhooks, args = commands["webhooks"]
    assert args.action == "serve"
    assert args.host == "0.0.0.0"
    assert f"127.0.0.1:{args.port}/healthz" in " ".join(webhooks["healthcheck"]["test"])
    assert "MOCO_WEBHOOK_SECRET" in webhooks["environment"]


def test_the_compose_variables_are_all_in_the_example_env_file() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    wanted = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", text))
    example = (DEPLOY / "syncer.env.example").read_text()
    listed = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.MULTILINE))
    assert wanted
    assert wanted <= listed, wanted - listed


def test_kubernetes_commands_variables_and_probes() -> None:
    seen = set()
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in read_yaml(path):
            for container in kubernetes_containers(doc):
                if "syncer" not in container["image"]:
                    continue
                words = container.get("command") or ["syncer"]
                args = parses(syncer_argv(words) + container.get("args", []))
                seen.add((doc["kind"], args.command, getattr(args, "once", None)))
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert unknown_variables(set(env), kit_configs()) == set(), path
                if doc["kind"] == "Deployment":
                    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
                    assert str(ports["metrics"]) == env["SYNCER_METRICS_PORT"]
                    assert env["SYNCER_METRICS_HOST"] == "0.0.0.0"
                    for probe in ("livenessProbe", "readinessProbe"):
                        get = container[probe]["httpGet"]
                        assert (get["path"], get["port"]) == ("/healthz", "metrics"), probe
    assert ("Deployment", "run", False) in seen
    assert ("CronJob", "run", True) in seen


def test_the_systemd_unit_starts_the_daemon() -> None:
    unit = read_unit(DEPLOY / "syncer.service")
    (start,) = [value for key, value in unit if key == "ExecStart"]
    args = parses(syncer_argv(shlex.split(start)))
    assert args.command == "run"
    names = {
        pair.partition("=")[0]
        for key, value in unit
        if key == "Environment"
        for pair in shlex.split(value)
    }
    assert names
    assert unknown_variables(names, kit_configs()) == set()
    assert ("KillSignal", "SIGTERM") in unit
