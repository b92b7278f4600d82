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
    from ._nir import HostEncoder as HostEncoder
    from ._nir import NIRExport as NIRExport
    from ._nir import load_host as load_host
    from ._nir import save_nir_export as save_nir_export
    from ._nir import simulate as simulate
    from ._nir import to_nir as to_nir
    from ._onnx import to_onnx as to_onnx

# public name -> the module of this package that defines it (one line per exporter)
_LAZY = {
    "to_nir": "._nir",
    "NIRExport": "._nir",
    "HostEncoder": "._nir",
    "simulate": "._nir",
    "save_nir_export": "._nir",
    "load_host": "._nir",
    "to_onnx": "._onnx",  # the whole model as an ONNX file for onnxruntime
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
