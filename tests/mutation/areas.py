"""The mutation-testing areas: which source files each area mutates and which tests judge them.

This is the one place to edit when modules move. ``python tests/mutation/run.py AREA`` (or
``make mutation AREA=...``) mutates ``sources`` and runs only ``tests`` against each mutant, minus
the tests in ``skip_tests`` (each with the reason); ``skip_lines`` are regular expressions of
source lines that are not mutated (each with the reason). ``tests/test_mutation_areas.py`` checks
that every path named here exists and that every module of ``src/gac_coding`` is either in exactly
one area or in ``OUTSIDE`` with a reason, so a moved or new module fails the suite until this map
follows it.

Paths are relative to the repository root; ``sources`` may use ``fnmatch`` patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Area:
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    #: pytest node ids (a test, all its parametrizations) left out of the mutation runs -> why
    skip_tests: dict[str, str] = field(default_factory=dict)
    #: regular expressions of source lines that are not mutated -> why
    skip_lines: dict[str, str] = field(default_factory=dict)


# Tests that start fresh Python processes (import checks, inductor compiles) cost seconds each and
# judge how modules import, not the numbers an area computes; torch.compile recompiles for every
# mutant (tens of seconds). They run in the ordinary suite; each area keeps the eager, float64
# tests that judge its numbers.
_FRESH = "starts a fresh Python process (seconds per mutant); checks imports, not numbers"
_COMPILE = "torch.compile recompiles per mutant (tens of seconds); the numbers are judged eagerly"

AREAS: dict[str, Area] = {
    "ops": Area(
        sources=(
            "src/gac_coding/ops/__init__.py",
            "src/gac_coding/ops/_cpp.py",
            "src/gac_coding/ops/_eager.py",
            "src/gac_coding/ops/_triton.py",
            "src/gac_coding/ops/backends.py",
            "src/gac_coding/ops/functional.py",
            "src/gac_coding/ops/layout.py",
            "src/gac_coding/ops/params.py",
        ),
        tests=(
            "tests/test_ops.py",
            "tests/test_backends.py",
            "tests/test_lif_backend.py",
            "tests/test_neuron.py",
            "tests/test_ties.py",
        ),
        skip_tests={
            "tests/test_ops.py::test_compiled_lif_equals_eager": _COMPILE,
            "tests/test_ops.py::test_inductor_compiles_lif_module_and_gate_unit": _COMPILE,
            "tests/test_ops.py::test_compiled_gated_lif_equals_eager": _COMPILE,
            "tests/test_ops.py::test_callable_surrogate_compiles_through_the_decomposition": _COMPILE,
            "tests/test_ops.py::test_encoder_compiles_fullgraph_and_checks_values_on_cpu_only": _COMPILE,
            "tests/test_lif_backend.py::test_import_compiles_nothing_and_imports_no_triton": _FRESH,
        },
    ),
    "export": Area(
        sources=("src/gac_coding/export/*.py",),
        tests=(
            "tests/test_nir.py",
            "tests/test_nir_settings.py",
            "tests/test_compile_export.py",
            "tests/test_ties.py",
        ),
        skip_tests={
            "tests/test_compile_export.py::test_models_and_encoder_compile_fullgraph_on_the_first_call_"
            "of_a_fresh_process": _FRESH,
            "tests/test_compile_export.py::test_wrapped_nets_of_every_framework_compile_with_inductor_"
            "train_and_eval": _COMPILE,
            "tests/test_compile_export.py::test_model_code_paths_trace_into_one_graph": _COMPILE,
            "tests/test_compile_export.py::test_bad_input_under_compile_meets_the_eager_messages": _COMPILE,
        },
    ),
    "events": Area(
        sources=("src/gac_coding/train/events.py",),
        tests=("tests/test_events.py", "tests/test_events_pinned.py"),
        skip_tests={
            "tests/test_events.py::test_torchrun_ranks_share_one_frame_cache": "two torchrun ranks "
            "in fresh processes (tens of seconds per mutant); the cache key and reuse are judged in "
            "process",
        },
    ),
    "energy": Area(
        sources=("src/gac_coding/energy.py",),
        tests=("tests/test_energy.py", "tests/test_energy_counts.py"),
        skip_tests={
            "tests/test_energy.py::test_core_works_without_spikingjelly_or_matplotlib": _FRESH,
            "tests/test_energy.py::test_energy_module_imports_neither_the_models_nor_the_cli": _FRESH,
        },
    ),
    "adapters": Area(
        sources=("src/gac_coding/adapters/*.py",),
        tests=(
            "tests/test_adapters.py",
            "tests/test_adapters_backbones.py",
            "tests/test_adapters_shared.py",
        ),
        skip_tests={"tests/test_adapters.py::test_import_and_torch_wrap_need_no_snn_framework": _FRESH},
    ),
    "encoder": Area(
        sources=(
            "src/gac_coding/encoder.py",
            "src/gac_coding/attention.py",
            "src/gac_coding/neuron.py",
        ),
        tests=(
            "tests/test_encoder.py",
            "tests/test_timesteps.py",
            "tests/test_neuron.py",
            "tests/test_stem.py",
            "tests/test_ties.py",
        ),
        skip_tests={"tests/test_encoder.py::test_import_needs_torch_only": _FRESH},
    ),
    "models": Area(
        sources=("src/gac_coding/models/*.py",),
        tests=("tests/test_models.py", "tests/test_checkpoints.py", "tests/test_timesteps.py"),
    ),
}

#: Modules in no area -> why. Mutation testing covers the numerical core; these are glue, the
#: command line and the training loop, judged by their own tests in the ordinary suite.
OUTSIDE: dict[str, str] = {
    "src/gac_coding/__init__.py": "re-exports only",
    "src/gac_coding/__main__.py": "calls the command line",
    "src/gac_coding/_version.py": "the version string",
    "src/gac_coding/_checks.py": "argument checks shared by every area (tests/test_checks.py)",
    "src/gac_coding/_measure.py": "eval-mode and state-reset context shared by energy and export",
    "src/gac_coding/analysis.py": "coding metrics and plots (tests/test_analysis.py)",
    "src/gac_coding/cli.py": "the command line (tests/test_cli.py)",
    "src/gac_coding/ops/_triton_kernels.py": "@triton.jit kernels: mutmut mutates no decorated "
    "function, and these run only under triton (CUDA, or its slow CPU interpreter)",
    "src/gac_coding/train/__init__.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/augment.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/checkpoint.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/data.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/demo.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/distributed.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/engine.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/losses.py": "the training package (tests/test_train_*.py)",
}
