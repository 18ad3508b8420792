"""The nightly evaluation on a cluster: per suite a CronJob running `sovra eval` against the Sovra
gateway and pushing the results to VictoriaMetrics, the suites' files in a ConfigMap, and alert
rules for a pass-rate regression and for a suite that stopped running."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sovra.config import RenderSettings
from sovra.deploy.objects import PORT, Manifest, container_security, metadata, pod_security, selector
from sovra.deploy.policies import GATEWAY

__all__ = ["eval_objects"]

SUITES_MOUNT = "/suites"


def _slug(path: Path) -> str:
    name = path.parent.name if path.name == "promptfooconfig.yaml" else path.stem
    return re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:40] or "suite"


def _files(suite: Path) -> dict[str, str]:
    """The suite and the files beside it (prompts, tests, graders it refers to with file://)."""
    directory = suite.parent
    files = {
        p.name: p.read_text(encoding="utf-8")
        for p in sorted(directory.iterdir())
        if p.is_file() and p.suffix in (".yaml", ".yml", ".json", ".txt", ".py", ".md")
    }
    return files if suite.name in files else {**files, suite.name: suite.read_text(encoding="utf-8")}


def _config_map(slug: str, suite: Path, settings: RenderSettings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(f"sovra-eval-{slug}", settings.namespace, "evals"),
        "data": _files(suite),
    }


def _cron_job(slug: str, suite: Path, settings: RenderSettings, schedule: str) -> Manifest:
    gateway = f"http://{GATEWAY}.{settings.namespace}.svc.cluster.local:{PORT}/v1"
    command = [
        "sovra",
        "eval",
        f"{SUITES_MOUNT}/{slug}/{suite.name}",
        "-c",
        "/etc/sovra/sovra.yaml",
        "-f",
        "/etc/sovra/catalog.yaml",
        "--base-url",
        gateway,
        "--no-progress",
        "--pass-rate",
        "0",
        "--push",
        settings.prometheus_address.rstrip("/") + "/api/v1/import/prometheus",
    ]
    container: dict[str, Any] = {
        "name": "eval",
        "image": settings.sovra_image,
        "command": command,
        # The gateway's Secret carries SOVRA_API_KEY (a key for the evaluation tenant) and the
        # database that keeps the history; the gateway's ConfigMap its platform config and catalog.
        "envFrom": [{"secretRef": {"name": GATEWAY, "optional": True}}],
        "securityContext": container_security(),
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "volumeMounts": [
            {"name": "suite", "mountPath": f"{SUITES_MOUNT}/{slug}", "readOnly": True},
            {"name": "platform", "mountPath": "/etc/sovra", "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod = {
        "metadata": {"labels": selector(f"sovra-eval-{slug}", "evals")},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security(),
            "containers": [container],
            "volumes": [
                {"name": "suite", "configMap": {"name": f"sovra-eval-{slug}"}},
                {"name": "platform", "configMap": {"name": GATEWAY}},
                {"name": "tmp", "emptyDir": {}},
            ],
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": metadata(f"sovra-eval-{slug}", settings.namespace, "evals"),
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": {"backoffLimit": 1, "template": pod}},
        },
    }


def _rules(settings: RenderSettings, regression_points: float, stale_hours: int) -> Manifest:
    """Pushed once a night, the series are read with last_over_time: a sample a day apart."""
    now = "last_over_time(promptfoo_test_pass_rate[26h])"
    before = "last_over_time(promptfoo_test_pass_rate[26h] offset 1d)"
    last_run = "max by (suite) (last_over_time(sovra_eval_last_run_timestamp_seconds[7d]))"
    stale = f"time() - {last_run} > {stale_hours * 3600}"
    rules = [
        {
            "alert": "EvalPassRateRegression",
            "expr": f"{now} < {before} - {regression_points / 100:g}",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "{{ $labels.suite }}: pass rate dropped by more than "
                f"{regression_points:g} points since the previous run (see `sovra eval history`)"
            },
        },
        {
            "alert": "EvalSuiteStale",
            "expr": stale,
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": f"{{{{ $labels.suite }}}}: no evaluation for more than {stale_hours} h"
            },
        },
    ]
    kind = (
        ("monitoring.coreos.com/v1", "PrometheusRule")
        if settings.monitoring == "prometheus-operator"
        else ("operator.victoriametrics.com/v1beta1", "VMRule")
    )
    return {
        "apiVersion": kind[0],
        "kind": kind[1],
        "metadata": metadata("sovra-evals", settings.namespace, "evals"),
        "spec": {"groups": [{"name": "sovra-evals", "rules": rules}]},
    }


def eval_objects(
    suites: tuple[Path, ...],
    settings: RenderSettings,
    schedule: str,
    regression_points: float,
    stale_hours: int,
) -> list[Manifest]:
    objects: list[Manifest] = []
    for suite in suites:
        slug = _slug(suite)
        objects += [_config_map(slug, suite, settings), _cron_job(slug, suite, settings, schedule)]
    return [*objects, _rules(settings, regression_points, stale_hours)] if suites else []
