"""The catalog reloader in process: the real planning (a stand-in llama-server and a tiny GGUF), the
real supervisor with fake engines, the gateway's served models as `sovra up` builds them."""

import logging
from pathlib import Path

import pytest

from sovra.access.balancer import Balancing
from sovra.config import load_platform_config
from sovra.inference.drivers import HostFacts
from sovra.inference.supervisor import Supervisor
from sovra.runtime.engines import plan_services
from sovra.runtime.reload import CatalogReloader
from sovra.runtime.serve import local_models
from sovra.spec import load_catalog
from tests.inference.fakes import FakeLauncher, FakeProber, until
from tests.inference.test_memory import SMALL, gguf

pytestmark = pytest.mark.anyio


def declaration(name: str, weights: Path, slots: int = 4) -> str:
    return (
        f"apiVersion: sovra.dev/v1alpha1\nkind: InferenceService\nmetadata: {{name: {name}}}\nspec:\n"
        f"  model: {{repository: test/tiny, source: 'file://{weights}', contextWindow: 1024, maxNumSeqs: {slots}}}\n"
        "  engine: llamacpp\n  gpu: {count: 0}\n  scaling: {minReplicas: 1, maxReplicas: 1}\n"
    )


async def test_a_reload_refuses_a_bad_catalog_and_applies_a_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = gguf(tmp_path / "tiny.gguf", SMALL)
    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    config = load_platform_config(
        None, environ={"SOVRA_HOME": str(tmp_path), "SOVRA_LLAMA_SERVER": str(binary)}
    )
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "a.yaml").write_text(declaration("a", weights))
    (folder / "b.yaml").write_text(declaration("b", weights))
    catalog = load_catalog(folder)
    plans = plan_services(catalog, config, {"a": weights, "b": weights}, HostFacts(False, False))
    launcher = FakeLauncher()
    engines = Supervisor(plans, startup_timeout=5, launcher=lambda: launcher, prober=lambda: FakeProber())
    served = local_models(engines, Balancing(), catalog)
    reloader = CatalogReloader(folder, catalog, config, engines, served, Balancing())
    await engines.start()
    try:
        assert await engines.wait_ready() == [] and len(launcher.started) == 2
        (folder / "b.yaml").write_text(declaration("b", weights, slots=0))
        with caplog.at_level(logging.ERROR, "sovra"):
            await reloader.reload()
        assert any("maxNumSeqs" in str(r.__dict__.get("problem")) for r in caplog.records)
        assert sorted(served) == ["a", "b"] and len(launcher.started) == 2  # nothing changed

        (folder / "a.yaml").write_text(declaration("a", weights, slots=2))  # changed
        (folder / "b.yaml").unlink()  # removed
        (folder / "c.yaml").write_text(declaration("c", weights))  # added
        await reloader.reload()
        assert sorted(served) == ["a", "c"] and "b" not in engines.replicas
        assert "--parallel" in launcher.started[2].argv  # a, restarted from its new plan
        argv = launcher.started[2].argv
        assert argv[argv.index("--parallel") + 1] == "2"
        await until(lambda: engines.replicas["c"][0].routable, within=5)
        assert served["c"].pool.endpoints[0] is engines.replicas["c"][0]
        assert [s.name for s in reloader.catalog.services] == ["a", "c"]
    finally:
        await engines.stop()
