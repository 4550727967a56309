"""Published hidden layers: a model package seen through the circuit of one of its layers.

An owner may publish, next to the model's circuit, the circuit of a prefix of the network that
returns the quantized activations of one hidden layer (``package_model(...,
representations=[...])``). Each is a Concrete ML save like the model's, in its own two zips
(:func:`fhe_backend.formats.artifacts.representation_zips`), so the auditor, the server and the
verifier use it through :class:`RepresentationPackage` exactly as they use the model's.

An encrypted benchmark and a run name the circuit they were made for: ``"model"``,
``"sealed"`` or ``"representation:<layer>"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotFoundError
from .artifacts import LAYER_CIRCUIT_PREFIX, ModelPackage, layer_of, representation_zips

__all__ = ["RepresentationPackage", "circuit_name", "circuit_package", "layer_of", "layers",
           "representation_view"]

def circuit_name(layer: str) -> str:
    """The name an encrypted benchmark and a run give the circuit of ``layer``."""
    return f"{LAYER_CIRCUIT_PREFIX}{layer}"


@dataclass
class RepresentationPackage(ModelPackage):
    """A model package seen through one published layer's circuit: ``client_zip`` and
    ``server_zip`` are the layer's, everything else (fingerprint, schema) the package's."""

    layer: str = ""

    @property
    def client_zip(self) -> Path:
        return self.path / representation_zips(self.layer)[0]

    @property
    def server_zip(self) -> Path:
        return self.path / representation_zips(self.layer)[1]

    @property
    def entry(self) -> dict[str, Any]:
        """The manifest's figures for this layer (width, PBS count, key sizes)."""
        return self.manifest.representations[self.layer]


def layers(package: ModelPackage) -> list[str]:
    return sorted(package.manifest.representations)


def representation_view(package: ModelPackage, layer: str) -> RepresentationPackage:
    """``package`` through the circuit of ``layer``; one sentence when it has no such layer."""
    if layer not in package.manifest.representations:
        published = layers(package)
        raise NotFoundError(
            f"Model {package.model_id!r} publishes no hidden layer {layer!r}"
            + (f" (it publishes {', '.join(published)})." if published else
               "; its owner did not package one (package_model(..., representations=[...]))."))
    return RepresentationPackage(path=package.path, manifest=package.manifest, layer=layer)


def circuit_package(package: ModelPackage, circuit: str) -> ModelPackage:
    """The package as the circuit an encrypted benchmark names runs it ("model" or a layer's;
    the sealed circuit is :func:`fhe_backend.sealed.circuit.sealed_view`)."""
    layer = layer_of(circuit)
    return package if layer is None else representation_view(package, layer)
