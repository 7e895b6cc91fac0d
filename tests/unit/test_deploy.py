"""What an operator deploys with (deploy/) is checked here, offline: Kubernetes manifests
against the Kubernetes schemas, the compose file against the Compose specification, the
systemd units with systemd-analyze, and the Grafana dashboard against the metrics qrloop
really exports. Images cannot be pulled or built here (deploy/README.md)."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from check_jsonschema.cli.main_command import main as check_jsonschema

from qrloop import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OVERLAY = DEPLOY / "kubernetes" / "overlays" / "example"
KUBERNETES_VERSION = "1.32"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomization(folder: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((folder / "kustomization.yaml").read_text())
    return loaded


def _base_objects() -> list[dict[str, Any]]:
    return [doc for name in _kustomization(BASE)["resources"] for doc in _documents(BASE / name)]


@functools.cache
def _is_qrloop_command(command: str) -> bool:
    """Whether `qrloop COMMAND --help` succeeds: the command exists in this qrloop."""
    qrloop = Path(sys.executable).with_name("qrloop")
    return (
        subprocess.run([qrloop, command, "--help"], capture_output=True, timeout=60).returncode == 0
    )


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"]
    return spec


def test_every_base_manifest_is_valid_kubernetes() -> None:
    """Each object the base lists validates strictly (no unknown fields) against the
    Kubernetes 1.32 schemas, and the base lists every manifest in its folder."""
    listed = set(_kustomization(BASE)["resources"])
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for obj in _base_objects():
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_overlay_renders_to_valid_kubernetes(tmp_path: Path) -> None:
    """`kustomize build` of the example overlay (with placeholder secrets, as an operator
    would write them) gives only valid objects, in the overlay's namespace, with the HPA's
    floor raised by the overlay's patch."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kustomize) is not installed; the base is validated above")
    tree = tmp_path / "kubernetes"
    shutil.copytree(DEPLOY / "kubernetes", tree)
    secrets = tree / "overlays" / "example" / "secrets"
    for example in secrets.glob("*.example"):
        (secrets / example.stem).write_text(example.read_text())
    (secrets / "keyring.json").write_text('{"keys": []}')
    rendered = subprocess.run(
        [kubectl, "kustomize", str(tree / "overlays" / "example")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    objects = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "qrloop"
    (hpa,) = [obj for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["minReplicas"] == 4


def test_each_role_is_probed_sized_and_runs_a_real_qrloop_command() -> None:
    """api, worker and signer Deployments have liveness and readiness probes on a port the
    container declares, CPU and memory requests, a memory limit, a non-root user, and run a
    command `qrloop` has; settings come from the ConfigMap and secrets from the Secret."""
    deployments = {
        obj["metadata"]["name"]: obj for obj in _base_objects() if obj["kind"] == "Deployment"
    }
    assert set(deployments) == {"qrloop-api", "qrloop-worker", "qrloop-signer"}
    for deployment in deployments.values():
        pod = _pod_spec(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert _is_qrloop_command(container["args"][0])
        ports = {port["name"] for port in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in ports
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        sources = {
            ("configMap" if "configMapRef" in source else "secret"): next(iter(source.values()))[
                "name"
            ]
            for source in container["envFrom"]
        }
        assert sources == {"configMap": "qrloop", "secret": "qrloop"}


def test_the_api_has_an_autoscaler_and_a_disruption_budget_that_select_it() -> None:
    """The HPA scales the api Deployment, and the PDB's selector matches the api pods (a
    selector that matches nothing would protect nothing)."""
    objects = _base_objects()
    (api,) = [
        o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "qrloop-api"
    ]
    (hpa,) = [o for o in objects if o["kind"] == "HorizontalPodAutoscaler"]
    (pdb,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "qrloop-api",
    }
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_key_ring_comes_from_a_secret_and_no_secret_is_committed() -> None:
    """The overlay's Secret carries QRLOOP_KEYRING from a file, and that folder holds only
    examples and a .gitignore that keeps real secrets out of git."""
    generator = _kustomization(OVERLAY)["secretGenerator"][0]
    assert any(entry.startswith("QRLOOP_KEYRING=") for entry in generator["files"])
    secrets = OVERLAY / "secrets"
    tracked = subprocess.run(
        ["git", "ls-files", str(secrets)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert {Path(name).name for name in tracked} <= {
        ".gitignore",
        "README.md",
        "DATABASE_URL.example",
        "REDIS_URL.example",
    }


def test_the_compose_file_follows_the_compose_specification() -> None:
    """deploy/compose.yaml validates against the Compose specification's JSON schema, runs
    every role with a real `qrloop` command, and its Valkey fsyncs every write."""
    with pytest.raises(SystemExit) as done:
        check_jsonschema(["--builtin-schema", "vendor.compose-spec", str(DEPLOY / "compose.yaml")])
    assert done.value.code == 0
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "signer", "postgres", "valkey"} <= set(services)
    for role in ("migrate", "api", "worker", "signer"):
        assert _is_qrloop_command(services[role]["command"][0])
    valkey = services["valkey"]["command"]
    assert valkey[valkey.index("--appendfsync") + 1] == "always"
    assert valkey[valkey.index("--appendonly") + 1] == "yes"


def test_the_systemd_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts every unit without a warning (it exits 0 on unknown
    keys, so its output must be empty too), with ExecStart pointed at this qrloop."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    qrloop = Path(sys.executable).with_name("qrloop")
    units = []
    for unit in sorted((DEPLOY / "systemd").glob("qrloop*.*")):
        if unit.suffix not in {".service", ".target"}:
            continue
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/qrloop/bin/qrloop", str(qrloop)))
        units.append(str(copy))
    assert len(units) == 5
    result = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_the_dockerfile_builds_from_the_wheel_and_runs_as_non_root() -> None:
    """Two stages (build the wheel; install only the wheel), a numeric non-root USER, a
    HEALTHCHECK, and `qrloop` as the entry point."""
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM \S+ AS \w+$", text, re.MULTILINE)) == 2
    assert "python -m build --wheel" in text
    assert re.search(r"pip install [^\n]*\*\.whl", text)
    (user,) = re.findall(r"^USER (\d+)(?::\d+)?$", text, re.MULTILINE)
    assert int(user) != 0
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert '\nENTRYPOINT ["qrloop"]\n' in text


def _exported_series() -> set[str]:
    """Every series name a qrloop scrape can hold, from the metric families themselves."""
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    text = metrics.render(0, 0, {}).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        base = name.removesuffix("_total")
        names |= {base + suffix for suffix in suffixes[kind]}
    return names


def test_the_dashboard_charts_only_metrics_qrloop_exports() -> None:
    """Every metric the Grafana dashboard queries is one qrloop's /metrics serves, so no
    panel stays empty because of a misspelt name."""
    dashboard = json.loads((DEPLOY / "grafana" / "qrloop.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bqrloop_[a-z_]+", target["expr"])
    }
    assert queried
    assert queried <= _exported_series()
