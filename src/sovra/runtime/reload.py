"""The catalog, reloaded while `sovra up` runs: on SIGHUP, or when a declaration file changes.

An invalid catalog is refused whole — every problem logged as `file: field: reason` — and the
running services stay as they were. A valid one is applied service by service: a new declaration is
planned (its weights fetched) and served; a changed one is replaced replica by replica, each
draining its requests first (`Supervisor.replace`); a removed one leaves `/v1/models` at once and
stops once its requests are done. The router's policy is not rebuilt (a restart does that).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from pathlib import Path

from sovra.access.balancer import Balancing, ReplicaPool
from sovra.access.served import ServedModel
from sovra.config import PlatformConfig
from sovra.errors import ConfigError, SovraError
from sovra.inference.drivers import HostFacts
from sovra.inference.supervisor import Supervisor
from sovra.runtime.engines import build_store, plan_services, preload, served_model
from sovra.spec import Catalog, declaration_files, load_catalog

__all__ = ["CatalogReloader"]

log = logging.getLogger("sovra")


class CatalogReloader:
    def __init__(
        self,
        path: Path,
        catalog: Catalog,
        config: PlatformConfig,
        supervisor: Supervisor,
        served: MutableMapping[str, ServedModel],
        balancing: Balancing,
    ) -> None:
        self._path = path
        self.catalog = catalog
        self._config = config
        self._supervisor = supervisor
        self._served = served
        self._balancing = balancing
        self._lock = asyncio.Lock()
        self._seen = self._fingerprint()

    def _fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Name, mtime and size of every file `load_catalog` reads."""
        try:
            files = declaration_files(self._path)
        except ConfigError:  # the catalog itself is gone: reloading will say so
            return ()
        stats = []
        for file in files:
            try:
                stat = file.stat()
            except OSError:
                continue
            stats.append((str(file), stat.st_mtime_ns, stat.st_size))
        return tuple(stats)

    async def watch(self, every: float = 2.0) -> None:
        """Reload whenever a declaration file changes (checked every `every` seconds)."""
        while True:
            await asyncio.sleep(every)
            if (seen := self._fingerprint()) != self._seen:
                self._seen = seen
                await self.reload()

    async def reload(self) -> None:
        async with self._lock:
            try:
                catalog = await asyncio.to_thread(load_catalog, self._path)
            except ConfigError as error:
                for problem in error.problems:
                    log.error("catalog reload refused; the running services are unchanged",
                              extra={"problem": str(problem)})  # fmt: skip
                return
            try:
                await self._apply(catalog)
            except SovraError as error:
                log.error("catalog reload stopped", extra={"reason": str(error)})

    async def _apply(self, catalog: Catalog) -> None:
        old = {s.name: s for s in self.catalog.services}
        new = {s.name: s for s in catalog.services}
        added = [n for n in new if n not in old]
        changed = [n for n in new if n in old and new[n] != old[n]]
        removed = [n for n in old if n not in new]
        wanted = Catalog(services=tuple(new[n] for n in added + changed))
        weights = await asyncio.to_thread(preload, wanted, build_store(self._config))
        planned = await asyncio.to_thread(plan_services, wanted, self._config, weights, HostFacts.probe())
        plans = {p.name: p for p in planned}
        for name in changed:
            try:
                await self._supervisor.replace(plans[name])
            except SovraError as error:  # this change waits for a restart; the others go on
                log.error("declaration not applied", extra={"service": name, "reason": str(error)})
                new[name] = old[name]
                continue
            self._served[name] = served_model(plans[name], new[name], self._served[name].pool)
        for name in added:
            replicas = await self._supervisor.add(plans[name])
            self._served[name] = served_model(
                plans[name], new[name], ReplicaPool(name, replicas, self._balancing)
            )
        for name in removed:
            self._served.pop(name, None)  # no new requests: it leaves /v1/models now
            await self._supervisor.remove(name)
        self.catalog = Catalog(services=tuple(new.values()))  # as applied
        log.info("catalog reloaded", extra={"added": ",".join(added), "changed": ",".join(changed),
                                            "removed": ",".join(removed)})  # fmt: skip
