"""Export a trained model out of PyTorch: the spiking backbone to NIR with the GAC encoder on the
host (``to_nir``), or the whole model to an ONNX file (``to_onnx``).

``from gac_coding.export import to_nir, to_onnx`` (needs the ``export`` extra: ``pip install
"gac-coding[export]"``). The names below are imported on first use, so ``import gac_coding.export``
costs nothing and needs torch alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:  # for type checkers and the API reference; at run time the names load on first use
    from .nir import HostEncoder as HostEncoder
    from .nir import NIRExport as NIRExport
    from .nir import load_host as load_host
    from .nir import save_nir_export as save_nir_export
    from .nir import simulate as simulate
    from .nir import to_nir as to_nir
    from .onnx import to_onnx as to_onnx

# public name -> the module of this package that defines it (one line per exporter)
_LAZY = {
    "to_nir": ".nir",
    "NIRExport": ".nir",
    "HostEncoder": ".nir",
    "simulate": ".nir",
    "save_nir_export": ".nir",
    "load_host": ".nir",
    "to_onnx": ".onnx",  # the whole model as an ONNX file for onnxruntime
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
