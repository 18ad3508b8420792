"""The composition function: a Crossplane InferenceService in, the resources `sovra render` would
emit for it out — the same code (`deploy.render.service_objects`), so the two cannot disagree.

`sovra function serve` runs it as a gRPC server (crossplane-function-sdk-python); a Composition
in Pipeline mode (composition.py) calls it, then function-auto-ready marks the XR ready.
"""

from __future__ import annotations

from typing import Any

import grpc  # type: ignore[import-untyped]
from crossplane.function import resource, response
from crossplane.function.proto.v1 import run_function_pb2 as fnv1
from crossplane.function.proto.v1 import run_function_pb2_grpc as grpcv1
from pydantic import ValidationError

from sovra.config import RenderSettings
from sovra.deploy.render import service_objects
from sovra.spec import InferenceService, validation_problems

__all__ = ["SovraFunction", "composed_name", "service_from_composite"]

# What Kubernetes and Crossplane add to a composite resource, which a declaration does not have.
_MACHINERY = (
    "crossplane",
    "compositionRef",
    "compositionRevisionRef",
    "compositionSelector",
    "compositionUpdatePolicy",
    "resourceRefs",
    "claimRef",
    "writeConnectionSecretToRef",
)


def service_from_composite(composite: dict[str, Any]) -> InferenceService:
    """The declaration inside an observed composite resource (raises ValidationError)."""
    metadata = composite.get("metadata") or {}
    spec = {k: v for k, v in (composite.get("spec") or {}).items() if k not in _MACHINERY}
    return InferenceService.model_validate(
        {
            "apiVersion": composite.get("apiVersion"),
            "kind": composite.get("kind"),
            "metadata": {
                k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata
            },
            "spec": spec,
        }
    )


def composed_name(manifest: dict[str, Any]) -> str:
    """The resource's key in the desired state: stable across runs, unique within one XR."""
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}"


class SovraFunction(grpcv1.FunctionRunnerServiceServicer):
    def __init__(self, settings: RenderSettings | None = None) -> None:
        self._settings = settings or RenderSettings()

    async def RunFunction(  # the gRPC method's name
        self, request: fnv1.RunFunctionRequest, context: grpc.aio.ServicerContext | None = None
    ) -> fnv1.RunFunctionResponse:
        answer = response.to(request)
        composite = resource.struct_to_dict(request.observed.composite.resource)
        try:
            service = service_from_composite(composite)
        except ValidationError as error:
            name = (composite.get("metadata") or {}).get("name", "?")
            reasons = "; ".join(f"{p.field}: {p.reason}" for p in validation_problems(name, error))
            response.fatal(answer, f"invalid InferenceService {name}: {reasons}")
            return answer
        objects = service_objects(service, self._settings)
        for manifest in objects:
            resource.update(answer.desired.resources[composed_name(manifest)], manifest)
        response.normal(answer, f"rendered {len(objects)} resources for {service.name}")
        return answer
