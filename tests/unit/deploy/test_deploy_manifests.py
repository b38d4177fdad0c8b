"""The Kubernetes manifests: every file and every rendered overlay valid against the
Kubernetes schemas (offline, kubernetes-validate) or, for the custom kinds, against
deploy/kubernetes/schemas; and the facts that hold them to the code: probes, grace,
secrets, settings, the scaler's target and the selectors."""

from __future__ import annotations

import functools
import json
import pathlib
from collections.abc import Iterator
from typing import Any

import deploy_kit as kit
import jsonschema
import kubernetes_validate
import pytest

from kairo_ingest import config
from support import outcomes

# The oldest Kubernetes minor still commonly run, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.schema.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "triggerauthentication.schema.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.schema.json",
}
SECRET_KEYS = {"database-url", "direct-database-url", "apify-token", "secret-key", "console-token"}
# The exit after SIGTERM is bounded by KAIRO_SHUTDOWN_GRACE_SECONDS; Kubernetes' SIGKILL
# must come at least this much later (docs/deployment.md: Shutdown).
SHUTDOWN_MARGIN_SECONDS = 10

RENDERED = [kit.BASE, *kit.OVERLAYS]


def _ids(paths: list[pathlib.Path]) -> list[str]:
    return [str(p.relative_to(kit.KUBERNETES)) for p in paths]


@pytest.fixture(autouse=True, scope="module")
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads and parses its schema files (1 MB of definitions) at every
    call; the files do not change during a session, so each is read once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            kubernetes_validate.utils,
            "schema_contents",
            functools.cache(kubernetes_validate.utils.schema_contents),
        )
        yield


@functools.cache
def _custom_validator(schema_file: str) -> jsonschema.protocols.Validator:
    """The validator for one custom kind's schema, the schema itself checked once."""
    schema = json.loads((kit.SCHEMAS / schema_file).read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def _validate(doc: dict[str, Any]) -> None:
    schema_file = CUSTOM.get((doc["apiVersion"], doc["kind"]))
    if schema_file is not None:
        _custom_validator(schema_file).validate(doc)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def _container(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    pod = kit.only(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    container = outcomes.only(pod["containers"])
    return dict(container)


def _config(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(kit.only(docs, "ConfigMap")["data"])


def _secret_refs(doc: Any) -> set[str]:
    """Every secretKeyRef key and TriggerAuthentication secret key under ``doc``."""
    found: set[str] = set()
    if isinstance(doc, dict):
        if "secretKeyRef" in doc:
            found.add(doc["secretKeyRef"]["key"])
        for ref in doc.get("secretTargetRef", []) if "secretTargetRef" in doc else []:
            found.add(ref["key"])
        for value in doc.values():
            found |= _secret_refs(value)
    elif isinstance(doc, list):
        for value in doc:
            found |= _secret_refs(value)
    return found


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_base_manifest_is_valid_against_its_schema() -> None:
    resources = [p for p in sorted(kit.BASE.glob("*.yaml")) if p.name != "kustomization.yaml"]
    assert resources
    for path in resources:
        for doc in kit.load_all(path):
            _validate(doc)


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_every_rendered_overlay_is_valid_against_the_schemas(directory: pathlib.Path) -> None:
    docs = kit.render(directory)
    assert {d["kind"] for d in docs} >= {"Deployment", "Job", "ConfigMap", "Service"}
    for doc in docs:
        _validate(doc)


def test_a_misspelt_field_fails_validation() -> None:
    """The check is strict: neither schema kind lets an unknown field through."""
    docs = kit.render(kit.BASE)
    deployment = kit.only(docs, "Deployment", "kairo-ingest-worker")
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment)
    scaled = kit.only(docs, "ScaledObject")
    scaled["spec"]["maxReplicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        _validate(scaled)


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_the_worker_probes_livez_and_readyz_on_its_http_port(directory: pathlib.Path) -> None:
    docs = kit.render(directory)
    worker = _container(docs, "kairo-ingest-worker")
    port = outcomes.only(worker["ports"])
    assert port["name"] == "http"
    assert str(port["containerPort"]) == _config(docs)["KAIRO_HTTP_PORT"]
    assert worker["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # /readyz checks the database with a 1.5 s timeout: the probe must wait longer.
    assert worker["readinessProbe"]["timeoutSeconds"] >= 2
    assert worker["resources"]["requests"]
    assert worker["resources"]["limits"]["memory"]


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_the_termination_grace_covers_the_bounded_shutdown(directory: pathlib.Path) -> None:
    docs = kit.render(directory)
    pod = kit.only(docs, "Deployment", "kairo-ingest-worker")["spec"]["template"]["spec"]
    shutdown = float(_config(docs)["KAIRO_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] >= shutdown + SHUTDOWN_MARGIN_SECONDS


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_every_configured_variable_is_a_setting(directory: pathlib.Path) -> None:
    """A misspelt KAIRO_ variable would be ignored silently (settings ignore extras)."""
    known = {f"{config.ENV_PREFIX}{name.upper()}" for name in config.Settings.model_fields}
    docs = kit.render(directory)
    named = set(_config(docs))
    for deployment in ("kairo-ingest-worker", "kairo-ingest-console"):
        named |= {e["name"] for e in _container(docs, deployment).get("env", [])}
    job = kit.only(docs, "Job")["spec"]["template"]["spec"]["containers"][0]
    named |= {e["name"] for e in job["env"]}
    assert named - known == set()


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_secrets_come_from_the_documented_keys_and_migrations_go_direct(
    directory: pathlib.Path,
) -> None:
    docs = kit.render(directory)
    assert _secret_refs(docs) - {"postgres-password"} <= SECRET_KEYS
    job = kit.only(docs, "Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]
    url = outcomes.only([e for e in job["env"] if e["name"] == "KAIRO_DATABASE_URL"])
    assert url["valueFrom"]["secretKeyRef"]["key"] == "direct-database-url"
    for doc in docs:
        assert doc["kind"] != "Secret" or directory.name == "dev", "secrets are not committed"


def test_the_dev_overlay_generates_every_secret_key_it_references() -> None:
    dev = outcomes.only([d for d in kit.OVERLAYS if d.name == "dev"])
    docs = kit.render(dev)
    secret = kit.only(docs, "Secret")
    assert _secret_refs(docs) <= set(secret["data"])


@pytest.mark.parametrize("directory", RENDERED, ids=_ids(RENDERED))
def test_selectors_find_the_pods_they_are_meant_for(directory: pathlib.Path) -> None:
    docs = kit.render(directory)
    worker = kit.only(docs, "Deployment", "kairo-ingest-worker")
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert _matches(worker["spec"]["selector"]["matchLabels"], pod_labels)
    pdb = kit.only(docs, "PodDisruptionBudget")
    assert _matches(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    service = kit.only(docs, "Service", "kairo-ingest-worker")
    assert _matches(service["spec"]["selector"], pod_labels)
    console = kit.only(docs, "Deployment", "kairo-ingest-console")
    console_service = kit.only(docs, "Service", "kairo-ingest-console")
    assert _matches(
        console_service["spec"]["selector"], console["spec"]["template"]["metadata"]["labels"]
    )
    assert not _matches(console_service["spec"]["selector"], pod_labels)
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    for monitor in monitors:
        assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


@pytest.mark.parametrize(
    "directory",
    [d for d in RENDERED if d.name != "dev"],
    ids=_ids([d for d in RENDERED if d.name != "dev"]),
)
def test_keda_owns_the_worker_replicas_and_targets_one_workers_concurrency(
    directory: pathlib.Path,
) -> None:
    docs = kit.render(directory)
    worker = kit.only(docs, "Deployment", "kairo-ingest-worker")
    assert "replicas" not in worker["spec"]  # an apply would fight the autoscaler
    scaled = kit.only(docs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    trigger = outcomes.only(scaled["spec"]["triggers"])
    assert trigger["type"] == "postgresql"
    assert trigger["metadata"]["targetQueryValue"] == _config(docs)["KAIRO_CONCURRENCY"]
    assert scaled["spec"]["minReplicaCount"] >= 1  # someone reaps and maintains
    auth = kit.only(docs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    ref = outcomes.only(auth["spec"]["secretTargetRef"])
    assert (ref["parameter"], ref["key"]) == ("connection", "direct-database-url")
