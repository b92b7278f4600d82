"""The mutation-testing areas: which source code each area mutates and which tests judge it.

This is the one place to edit when modules move. ``python tests/mutation/run.py AREA`` (or
``make mutation AREA=...``) mutates the area's ``sources`` and runs only its ``tests`` against each
mutant, minus the tests in ``skip_tests`` (each with the reason); lines matching ``skip_lines``
(regular expressions, each with the reason) are not mutated. An area is sized to finish in under
20 minutes with 2 jobs on 2 otherwise idle cores: a few hundred mutants. A large module is split
between areas by ``functions`` (``"name"`` for a module-level function, ``"Class.method"`` or
``"Class.*"``; ``fnmatch`` patterns). ``GROUPS`` name the parts of the library the areas add up to
(``make mutation AREA=export`` runs every export area in turn).

``tests/test_mutation_areas.py`` checks that every path named here exists, that every module of
``src/gac_coding`` is in one area (or, split by functions, each of its functions in exactly one) or
in ``OUTSIDE`` with a reason, so that a moved or new module fails the suite until the map follows.
Paths are relative to the repository root; ``sources`` may use ``fnmatch`` patterns.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Area:
    sources: tuple[str, ...]
    tests: tuple[str, ...]
    #: only the mutants of these functions of ``sources`` (empty: every function)
    functions: tuple[str, ...] = ()
    #: pytest node ids (a test, all its parametrizations) left out of the mutation runs -> why
    skip_tests: dict[str, str] = field(default_factory=dict)
    #: regular expressions of source lines that are not mutated -> why
    skip_lines: dict[str, str] = field(default_factory=dict)


# Tests that start fresh Python processes (import checks, an inductor compile in a fresh process,
# torchrun) cost seconds per mutant and judge how modules import, not numbers; torch.compile
# recompiles for every mutant (tens of seconds). They run in the ordinary suite; each area keeps
# the eager, float64 tests that judge its numbers.
_FRESH = "starts a fresh Python process (seconds per mutant); checks imports, not numbers"
_COMPILE = "torch.compile recompiles per mutant (tens of seconds); the numbers are judged eagerly"
_STACK = "checks where a warning points (stacklevel); mutmut's trampolines add stack frames"

_OPS_TESTS = (
    "tests/test_ops.py",
    "tests/test_backends.py",
    "tests/test_lif_backend.py",
    "tests/test_neuron.py",
    "tests/test_ties.py",
)
_OPS_SKIP = {
    "tests/test_ops.py::test_compiled_lif_equals_eager": _COMPILE,
    "tests/test_ops.py::test_inductor_compiles_lif_module_and_gate_unit": _COMPILE,
    "tests/test_ops.py::test_compiled_gated_lif_equals_eager": _COMPILE,
    "tests/test_ops.py::test_callable_surrogate_compiles_through_the_decomposition": _COMPILE,
    "tests/test_ops.py::test_encoder_compiles_fullgraph_and_checks_values_on_cpu_only": _COMPILE,
    "tests/test_lif_backend.py::test_import_compiles_nothing_and_imports_no_triton": _FRESH,
}
_NIR_TESTS = ("tests/test_nir.py", "tests/test_nir_settings.py")
_NIR = ("src/gac_coding/export/_nir.py",)

AREAS: dict[str, Area] = {
    # ---------------------------------------------------------------------------- ops
    "ops-eager": Area(
        sources=(
            "src/gac_coding/ops/__init__.py",
            "src/gac_coding/ops/_eager.py",
            "src/gac_coding/ops/backends.py",
            "src/gac_coding/ops/layout.py",
            "src/gac_coding/ops/params.py",
        ),
        tests=_OPS_TESTS,
        skip_tests=_OPS_SKIP,
    ),
    "ops-functional": Area(
        sources=("src/gac_coding/ops/functional.py",),
        tests=_OPS_TESTS,
        skip_tests=_OPS_SKIP,
    ),
    "ops-native": Area(
        # the C++ and Triton backends' host code; the Triton kernels run in triton's CPU
        # interpreter in the tests (the conftest sets TRITON_INTERPRET=1)
        sources=("src/gac_coding/ops/_cpp.py", "src/gac_coding/ops/_triton.py"),
        tests=("tests/test_backends.py", "tests/test_lif_backend.py", "tests/test_ops.py"),
        skip_tests=_OPS_SKIP,
    ),
    # ---------------------------------------------------------------------------- export
    "export-nir-neurons": Area(
        sources=_NIR,
        functions=(
            "_decay_node",
            "_neuron_node",
            "_norse_node",
            "_snntorch_leaky",
            "_spikingjelly_node",
            "_probe_spike_function",
            "_class_is",
            "_full",
            "_describe",
            "_check_dt",
            "_unsupported",
            "_require_nir",
            "_first_tensor",
            "_per_sample",
            "_trace_shapes",
            "HostEncoder.*",
            "_Builder.neuron",
            "_Builder.validate",
        ),
        tests=_NIR_TESTS,
    ),
    "export-nir-graph": Area(
        sources=_NIR,
        functions=(
            "to_nir",
            "_is_chain",
            "_with_binarize",
            "_Builder.__init__",
            "_Builder._bn_scale",
            "_Builder._flatten_items",
            "_Builder.add",
            "_Builder.array",
            "_Builder.avgpool",
            "_Builder.block",
            "_Builder.chain",
            "_Builder.conv",
            "_Builder.flatten",
            "_Builder.linear",
            "_Builder.module",
            "_Builder.nir_shape",
            "_Builder.pool",
            "_Builder.shape_of",
        ),
        tests=_NIR_TESTS,
    ),
    "export-nir-run": Area(
        sources=_NIR,
        functions=(
            "simulate",
            "_simulate",
            "_node_step",
            "_synaptic_module",
            "_topological",
            "load_host",
            "save_nir_export",
            "NIRExport.*",
        ),
        tests=_NIR_TESTS,
    ),
    "export-onnx": Area(
        sources=(
            "src/gac_coding/export/__init__.py",
            "src/gac_coding/export/_onnx.py",
            "src/gac_coding/export/cli.py",
        ),
        tests=("tests/test_compile_export.py", "tests/test_ties.py", "tests/test_nir.py"),
        skip_tests={
            "tests/test_compile_export.py::test_models_and_encoder_compile_fullgraph_on_the_first_"
            "call_of_a_fresh_process": _FRESH,
            "tests/test_compile_export.py::test_wrapped_nets_of_every_framework_compile_with_"
            "inductor_train_and_eval": _COMPILE,
            "tests/test_compile_export.py::test_model_code_paths_trace_into_one_graph": _COMPILE,
            "tests/test_compile_export.py::test_bad_input_under_compile_meets_the_eager_messages": _COMPILE,
            "tests/test_nir.py::test_export_package_and_command_import_with_torch_alone": _FRESH,
        },
    ),
    # ---------------------------------------------------------------------------- the rest
    "events": Area(
        sources=("src/gac_coding/train/events.py",),
        tests=("tests/test_events.py", "tests/test_events_pinned.py"),
        skip_tests={
            "tests/test_events.py::test_torchrun_ranks_share_one_frame_cache": "two torchrun ranks "
            "in fresh processes (tens of seconds per mutant); the cache key and its reuse are judged "
            "in process",
        },
    ),
    "energy": Area(
        sources=("src/gac_coding/energy.py",),
        tests=("tests/test_energy.py", "tests/test_energy_counts.py"),
        skip_tests={
            "tests/test_energy.py::test_core_works_without_spikingjelly_or_matplotlib": _FRESH,
            "tests/test_energy.py::test_energy_module_imports_neither_the_models_nor_the_cli": _FRESH,
            "tests/test_energy_counts.py::test_a_moved_name_warns_at_the_line_that_uses_it": _STACK,
        },
    ),
    "adapters": Area(
        sources=("src/gac_coding/adapters/*.py",),
        tests=(
            "tests/test_adapters.py",
            "tests/test_adapters_backbones.py",
            "tests/test_adapters_shared.py",
        ),
        skip_tests={
            "tests/test_adapters.py::test_import_and_torch_wrap_need_no_snn_framework": _FRESH,
            "tests/test_adapters.py::test_warns_once_when_a_conv_receives_the_gated_code": _STACK,
        },
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
    "models-nets": Area(
        sources=(
            "src/gac_coding/models/__init__.py",
            "src/gac_coding/models/_steps.py",
            "src/gac_coding/models/msresnet.py",
            "src/gac_coding/models/registry.py",
            "src/gac_coding/models/vgg.py",
        ),
        tests=("tests/test_models.py", "tests/test_timesteps.py", "tests/test_checkpoints.py"),
    ),
    "models-checkpoints": Area(
        sources=("src/gac_coding/models/checkpoints.py",),
        tests=("tests/test_checkpoints.py", "tests/test_models.py"),
    ),
}

#: The parts of the library (the areas of issue 25) as the areas above add them up.
GROUPS: dict[str, tuple[str, ...]] = {
    "ops": ("ops-eager", "ops-functional", "ops-native"),
    "export": ("export-nir-neurons", "export-nir-graph", "export-nir-run", "export-onnx"),
    "events": ("events",),
    "energy": ("energy",),
    "adapters": ("adapters",),
    "encoder": ("encoder",),
    "models": ("models-nets", "models-checkpoints"),
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
    "function (their arithmetic is judged through the triton backend's tests)",
    "src/gac_coding/train/__init__.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/augment.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/checkpoint.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/data.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/demo.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/distributed.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/engine.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/losses.py": "the training package (tests/test_train_*.py)",
}
