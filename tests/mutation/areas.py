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
_NATIVE_TESTS = ("tests/test_backends.py", "tests/test_lif_backend.py", "tests/test_ops.py")
_LEAN_TESTS = ("tests/test_memory.py",)
_NETS_TESTS = (
    "tests/test_models.py",
    "tests/test_timesteps.py",
    "tests/test_checkpoints.py",
    "tests/test_models_nets_pinned.py",
)
_LEAN_SKIP = {"tests/test_memory.py::test_compiled_training_step_same_numbers": _COMPILE}
_NIR_TESTS = ("tests/test_nir.py", "tests/test_nir_settings.py", "tests/test_nir_parts.py")
_NIR_SKIP = {"tests/test_nir.py::test_export_package_and_command_import_with_torch_alone": _FRESH}
_NIR = "src/gac_coding/export/nir/"
_ADAPTER_TESTS = (
    "tests/test_adapters.py",
    "tests/test_adapters_backbones.py",
    "tests/test_adapters_shared.py",
    "tests/test_frameworks.py",
)
_SCAN = "reads the source text, which mutmut rewrites (trampolines); judges imports, not numbers"
_ADAPTER_SKIP = {
    "tests/test_adapters.py::test_import_and_torch_wrap_need_no_snn_framework": _FRESH,
    "tests/test_adapters.py::test_warns_once_when_a_conv_receives_the_gated_code": _STACK,
    "tests/test_frameworks.py::test_detection_reads_class_modules_and_imports_no_framework": _FRESH,
    "tests/test_frameworks.py::test_no_module_outside_the_adapters_reads_framework_names": _SCAN,
    "tests/test_frameworks.py::test_the_adapters_import_frameworks_lazily": _SCAN,
}
_ENERGY = "src/gac_coding/energy/__init__.py"
_ENERGY_TESTS = ("tests/test_energy.py", "tests/test_energy_counts.py")
_ENERGY_SKIP = {
    "tests/test_energy.py::test_core_works_without_spikingjelly_or_matplotlib": _FRESH,
    "tests/test_energy.py::test_energy_module_imports_neither_the_models_nor_the_cli": _FRESH,
    "tests/test_energy_counts.py::test_a_moved_name_warns_at_the_line_that_uses_it": _STACK,
}
_CODING_TESTS = (
    "tests/test_coding.py",
    "tests/test_stem.py",
    "tests/test_encoder.py",
    "tests/test_timesteps.py",
    "tests/test_ties.py",
)
_CODING_SKIP = {"tests/test_encoder.py::test_import_needs_torch_only": _FRESH}

AREAS: dict[str, Area] = {
    # ---------------------------------------------------------------------------- ops
    "ops-eager": Area(
        sources=(
            "src/gac_coding/ops/_eager.py",
            "src/gac_coding/ops/backends.py",
            "src/gac_coding/ops/layout.py",
            "src/gac_coding/ops/params.py",
        ),
        tests=(*_OPS_TESTS, "tests/test_backend_choice.py", "tests/test_ops_pinned.py"),
        skip_tests={
            **_OPS_SKIP,
            "tests/test_backend_choice.py::test_the_setting_reaches_compiled_graphs_as_a_constant_"
            "resolved_at_run_time": _COMPILE,
        },
    ),
    # ops/functional.py made 776 mutants in one area (36.5 minutes at a load of 4-7), so it is split
    # by functions: the autograd Functions and the backend calls they make (~340 mutants) ...
    "ops-functional-eager": Area(
        sources=("src/gac_coding/ops/functional.py",),
        functions=(
            "_in",
            "_out",
            "_kernel_surrogate",
            "_lif_forward",
            "_lif_backward",
            "_gated_forward",
            "_gated_backward",
            "_from",
            "_LIFFunction.*",
            "_GatedFunction.*",
        ),
        tests=(*_OPS_TESTS, "tests/test_ops_functional_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    # ... and the public ops, the custom operators' setup and backward, the decompositions (~436)
    "ops-functional-ops": Area(
        sources=("src/gac_coding/ops/functional.py",),
        functions=(
            "lif",
            "gated_lif",
            "_tracing",
            "_h_dtype",
            "_empty_out",
            "_params",
            "_empty_batch_grad",
            "_lif_setup",
            "_lif_op_backward",
            "_gated_setup",
            "_gated_op_backward",
            "_spike",
            "lif_decomposed",
            "gated_lif_decomposed",
            "_gate",
            "_lif_op_inference",
            "_gated_op_inference",
            "inference_decompositions",
        ),
        tests=(*_OPS_TESTS, "tests/test_ops_functional_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    # The C++ and Triton backends' host code; the Triton kernels run in triton's CPU interpreter
    # in the tests (the conftest sets TRITON_INTERPRET=1). One area of both files made 806
    # mutants (638 in _triton.py), so the Triton host code is split by functions.
    "ops-cpp": Area(
        sources=("src/gac_coding/ops/_cpp.py",),
        tests=(*_NATIVE_TESTS, "tests/test_ops_cpp_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    "ops-triton-setup": Area(
        # availability, loading, launching and the checks and block sizes the launches use
        sources=("src/gac_coding/ops/_triton.py",),
        functions=(
            "_interpret_requested",
            "interpreted",
            "available",
            "_load",
            "_launch",
            "_check",
            "_compute_dtype",
            "_tl_dtype",
            "_block",
            "_gated_layout",
            "triton_cdiv",
        ),
        tests=(*_NATIVE_TESTS, "tests/test_ops_triton_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    # the four functions of the backend: the kernels' arguments and the outputs' shapes (515
    # mutants in one area, 29.8 minutes at a load of 3: split in two)
    "ops-triton-lif": Area(
        sources=("src/gac_coding/ops/_triton.py",),
        functions=("lif_forward", "lif_backward"),
        tests=(*_NATIVE_TESTS, "tests/test_ops_triton_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    "ops-triton-gated": Area(
        sources=("src/gac_coding/ops/_triton.py",),
        functions=("gated_forward", "gated_backward"),
        tests=(*_NATIVE_TESTS, "tests/test_ops_triton_pinned.py"),
        skip_tests=_OPS_SKIP,
    ),
    "neuron": Area(
        sources=("src/gac_coding/neuron.py",),
        tests=(
            "tests/test_neuron.py",
            "tests/test_lif_backend.py",
            "tests/test_ties.py",
            "tests/test_neuron_pinned.py",
        ),
        skip_tests={"tests/test_lif_backend.py::test_import_compiles_nothing_and_imports_no_triton": _FRESH},
    ),
    # memory='lean' and 'checkpoint' (about 2,300 lines; 3,222 mutants in session 10's three runs)
    # in nine areas: the lean LIF, its eager and C++ backends, its Triton backend; BatchNorm with
    # the LIF (forward, backward) and the shared helpers; the lean gate, the strided convolution,
    # the entry points with the checkpoint
    "ops-lean-lif": Area(
        sources=("src/gac_coding/ops/_lean_lif.py",),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_lif_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # (the four files of the lean LIF made 1,349 mutants in one area, 38.9 minutes with 1 job)
    "ops-lean-backends": Area(
        sources=("src/gac_coding/ops/_lean_eager.py", "src/gac_coding/ops/_lean_cpp.py"),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_lif_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    "ops-lean-triton": Area(
        sources=("src/gac_coding/ops/_lean_triton.py",),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_lif_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # BatchNorm + LIF (1,111 mutants with the shared helpers in one run, 34.3 minutes at a load of
    # 3-4): its forward path and checks, its backward, and the helpers the lean ops share
    "ops-lean-bn": Area(
        sources=("src/gac_coding/ops/_lean_bn.py",),
        functions=(
            "bn_lif",
            "_bn_lif_forward",
            "_bn_lif_setup",
            "_BNLIFFunction.forward",
            "_batch_stats",
            "_bn_native",
            "_in_kernel",
            "_scale_shift",
            "_inner",
            "_check_pool",
            "_stats_dtype",
        ),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_bn_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    "ops-lean-bn-backward": Area(
        sources=("src/gac_coding/ops/_lean_bn.py",),
        functions=("_bn_lif_backward_run", "_bn_lif_backward", "_BNLIFFunction.backward"),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_bn_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    "ops-lean-common": Area(
        sources=("src/gac_coding/ops/_lean_common.py",),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_bn_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # ops/lean.py with the checkpoint made 762 mutants in one area (39.2 minutes at a load of 4-6),
    # so the entry points are split by functions: the lean gate (GAC's gated LIF) ...
    "ops-lean-gated": Area(
        sources=("src/gac_coding/ops/lean.py",),
        functions=("_lean_gated_*", "_LeanGatedFunction.*", "gated_lif", "lean_active_now"),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_api_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # ... the strided 1x1 convolution and the residual shortcut ...
    "ops-lean-conv": Area(
        sources=("src/gac_coding/ops/lean.py",),
        functions=(
            "_pointwise_*",
            "_PointwiseFunction.*",
            "pointwise_conv",
            "_subsampled",
            "_unfold",
            "block_shortcut",
        ),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_api_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # ... and the layer runner, the memory setting, the checkpoint and the measurement
    "ops-lean-api": Area(
        sources=(
            "src/gac_coding/ops/lean.py",
            "src/gac_coding/ops/memory.py",
            "src/gac_coding/adapters/memory.py",
        ),
        functions=(
            "run_layers",
            "_pool_size",
            "_is_neuron",
            "check_memory",
            "_tracing_inference",
            "lean_active",
            "MemorySetting.*",
            "module_memory",
            "SavedBytes.*",
            "_rng_devices",
            "_params_of",
            "_Checkpoint.*",
            "checkpoint",
            "_foreign",
            "set_memory",
            "_outermost",
        ),
        tests=(*_LEAN_TESTS, "tests/test_ops_lean_api_pinned.py"),
        skip_tests=_LEAN_SKIP,
    ),
    # ---------------------------------------------------------------------------- export
    "export-nir-neurons": Area(
        # the NIR neuron maps: the export's and each framework's (adapters/*: nir_node)
        sources=(
            _NIR + "neurons.py",
            _NIR + "host.py",
            _NIR + "trace.py",
            "src/gac_coding/adapters/_nir_nodes.py",
        ),
        tests=_NIR_TESTS,
        skip_tests=_NIR_SKIP,
    ),
    "export-nir-graph": Area(
        sources=(_NIR + "graph.py",),
        tests=(*_NIR_TESTS, "tests/test_nir_graph_pinned.py"),
        skip_tests=_NIR_SKIP,
    ),
    "export-nir-convert": Area(
        sources=(_NIR + "convert.py", _NIR + "files.py"),
        tests=(*_NIR_TESTS, "tests/test_nir_convert_pinned.py"),
        skip_tests=_NIR_SKIP,
    ),
    # the reference simulator (simulator.py: ~460 mutants) in three areas
    "export-nir-sim-graph": Area(
        # the graph's order, the synaptic nodes as torch modules, the public entry (~140 mutants)
        sources=(_NIR + "simulator.py",),
        functions=("_topological", "_synaptic_module", "simulate"),
        tests=_NIR_TESTS,
        skip_tests=_NIR_SKIP,
    ),
    "export-nir-sim-run": Area(
        # the time loop over the nodes (~165 mutants)
        sources=(_NIR + "simulator.py",),
        functions=("_simulate",),
        tests=_NIR_TESTS,
        skip_tests=_NIR_SKIP,
    ),
    "export-nir-sim-step": Area(
        # one step of a neuron node (~160 mutants)
        sources=(_NIR + "simulator.py",),
        functions=("_node_step",),
        tests=_NIR_TESTS,
        skip_tests=_NIR_SKIP,
    ),
    # ONNX, in two areas: one area of the four files ran at about 18 s per mutant (every mutant of
    # the decompositions and of Inductor's fallback ran every export test of the files below)
    "export-onnx-decomp": Area(
        # the neuron ops' entries in torch's global decomposition table (what the plain
        # torch.onnx.export reads) and Inductor's fallback for the ops, judged without compiling
        sources=("src/gac_coding/ops/_decomp.py", "src/gac_coding/ops/_inductor.py"),
        tests=("tests/test_onnx_plain_export.py", "tests/test_ties.py", "tests/test_onnx_decomp_pinned.py"),
    ),
    "export-onnx-api": Area(
        # to_onnx: its arguments, the export, the check in onnxruntime
        sources=("src/gac_coding/export/__init__.py", "src/gac_coding/export/onnx.py"),
        tests=("tests/test_compile_export.py", "tests/test_ties.py", "tests/test_onnx_api_pinned.py"),
        skip_tests={
            "tests/test_compile_export.py::test_models_and_encoder_compile_fullgraph_on_the_first_"
            "call_of_a_fresh_process": _FRESH,
            "tests/test_compile_export.py::test_wrapped_nets_of_every_framework_compile_with_"
            "inductor_train_and_eval": _COMPILE,
            "tests/test_compile_export.py::test_model_code_paths_trace_into_one_graph": _COMPILE,
            "tests/test_compile_export.py::test_bad_input_under_compile_meets_the_eager_messages": _COMPILE,
        },
    ),
    # ---------------------------------------------------------------------------- events
    "events": Area(
        sources=("src/gac_coding/train/events.py",),
        tests=("tests/test_events.py", "tests/test_events_pinned.py", "tests/test_events_more_pinned.py"),
        skip_tests={
            "tests/test_events.py::test_torchrun_ranks_share_one_frame_cache": "two torchrun ranks "
            "in fresh processes (tens of seconds per mutant); the cache key and its reuse are judged "
            "in process",
        },
    ),
    # ---------------------------------------------------------------------------- energy
    "energy-hooks": Area(
        # the hooks that count what each layer receives (~190 mutants)
        sources=(_ENERGY,),
        functions=(
            "_input_of",
            "_unbatched_rank",
            "_Counter.__init__",
            "_Counter.start_batch",
            "_Counter.role_of",
            "_Counter.encoder_pre_hook",
            "_Counter.synaptic_hook",
            "_Counter.norm_hook",
        ),
        tests=_ENERGY_TESTS,
        skip_tests=_ENERGY_SKIP,
    ),
    "energy-counter": Area(
        # steps per call, the batch loop, the report's totals (~170 mutants)
        sources=(_ENERGY,),
        functions=(
            "_Counter.steps_of",
            "_Counter.count_batch",
            "_Counter.report",
            "spikingjelly_counts",
            "calibrate_batchnorm",
        ),
        tests=_ENERGY_TESTS,
        skip_tests=_ENERGY_SKIP,
    ),
    "energy-api": Area(
        # estimate_energy's arguments and batches, the counting formulas, the report
        sources=(_ENERGY, "src/gac_coding/energy/counts.py", "src/gac_coding/energy/report.py"),
        functions=(
            "_check_energy_cost",
            "_batch_input",
            "_check_finite",
            "_Shapes.*",
            "_check_arguments",
            "estimate_energy",
            "is_binary",
            "_spatial_dims",
            "_batched",
            "dense_macs",
            "exact_synops",
            "LayerEnergy.*",
            "EnergyReport.*",
        ),
        tests=(*_ENERGY_TESTS, "tests/test_energy_data.py", "tests/test_energy_api_pinned.py"),
        skip_tests=_ENERGY_SKIP,
    ),
    # ---------------------------------------------------------------------------- adapters
    # adapters/__init__.py and _layers.py made 437 mutants in one area (29.2 minutes at a load of 5),
    # so they are split by functions: the wrapped net (GACNet) ...
    "adapters-wrap-net": Area(
        sources=("src/gac_coding/adapters/__init__.py",),
        functions=("GACNet.*",),
        tests=(*_ADAPTER_TESTS, "tests/test_adapters_wrap_pinned.py"),
        skip_tests={
            **_ADAPTER_SKIP,
            "tests/test_adapters_wrap_pinned.py::test_the_gated_code_warning_points_at_the_caller": _STACK,
        },
    ),
    # ... and wrap, the framework lookup and the input-layer helpers
    "adapters-wrap-api": Area(
        sources=("src/gac_coding/adapters/__init__.py", "src/gac_coding/adapters/_layers.py"),
        functions=(
            "__getattr__",
            "_resolve_framework",
            "_caller_level",
            "_reference_tensor",
            "wrap",
            "_get_layer",
            "find_input_layer",
            "first_receiving_layer",
            "layer_in_size",
            "adapt_layer",
            "replace_submodule",
        ),
        tests=(*_ADAPTER_TESTS, "tests/test_adapters_wrap_pinned.py"),
        skip_tests={
            **_ADAPTER_SKIP,
            "tests/test_adapters_wrap_pinned.py::test_the_gated_code_warning_points_at_the_caller": _STACK,
        },
    ),
    "adapters-registry": Area(
        sources=("src/gac_coding/adapters/base.py", "src/gac_coding/adapters/plain.py"),
        tests=(*_ADAPTER_TESTS, *_NIR_TESTS, "tests/test_adapters_registry_pinned.py"),
        skip_tests={**_ADAPTER_SKIP, **_NIR_SKIP},
    ),
    # the framework adapters, one area each (one area of the three made 904 mutants, 28.5 minutes
    # at a load of 3-4)
    **{
        f"adapters-{name}": Area(
            sources=(f"src/gac_coding/adapters/{name}.py",),
            tests=(
                *_ADAPTER_TESTS,
                *_NIR_TESTS,
                "tests/test_energy.py",
                "tests/test_adapters_frameworks_pinned.py",
            ),
            skip_tests={
                **_ADAPTER_SKIP,
                **_NIR_SKIP,
                **{k: v for k, v in _ENERGY_SKIP.items() if "counts" not in k},
            },
        )
        for name in ("snntorch", "norse", "spikingjelly")
    },
    # ---------------------------------------------------------------------------- coding
    "coding-gac": Area(
        sources=(
            "src/gac_coding/coding/gac.py",
            "src/gac_coding/coding/gate_stats.py",
            "src/gac_coding/attention.py",
        ),
        tests=(
            *_CODING_TESTS,
            "tests/test_gate_variants.py",
            "tests/test_coding_gac_pinned.py",
            "tests/test_attention_pinned.py",
        ),
        skip_tests={
            **_CODING_SKIP,
            "tests/test_gate_variants.py::test_variants_trace_into_one_graph_under_torch_compile": _COMPILE,
            "tests/test_attention_pinned.py::test_a_recording_encoder_with_memory_checkpoint_compiles_"
            "without_the_checkpoint": _COMPILE,
        },
    ),
    "coding-stem": Area(
        # the stem every encoder shares, the other codings, the registry
        sources=(
            "src/gac_coding/coding/base.py",
            "src/gac_coding/coding/direct.py",
            "src/gac_coding/coding/rate.py",
            "src/gac_coding/coding/latency.py",
            "src/gac_coding/coding/registry.py",
        ),
        tests=(*_CODING_TESTS, "tests/test_coding_gac_pinned.py", "tests/test_stem_pinned.py"),
        skip_tests=_CODING_SKIP,
    ),
    # ---------------------------------------------------------------------------- models
    # the backbones: one area in session 9 (1,301 mutants, 68.8 minutes), split by files since
    "models-nets-resnet": Area(
        sources=(
            "src/gac_coding/models/_stem.py",
            "src/gac_coding/models/_steps.py",
            "src/gac_coding/models/msresnet.py",
            "src/gac_coding/models/registry.py",
        ),
        tests=_NETS_TESTS,
    ),
    "models-nets-vgg": Area(sources=("src/gac_coding/models/vgg.py",), tests=_NETS_TESTS),
    "models-pretrained": Area(
        # Hub-style folders and their model card
        sources=("src/gac_coding/models/pretrained.py", "src/gac_coding/models/_card.py"),
        tests=("tests/test_pretrained.py", "tests/test_models_pretrained_pinned.py"),
    ),
    "integrations": Area(
        # NeuroBench's view of a model: batch-first, the neurons as activation modules (not run yet)
        sources=("src/gac_coding/integrations/neurobench.py",),
        tests=("tests/test_neurobench.py", "tests/test_neurobench_pinned.py"),
    ),
    "models-checkpoints": Area(
        # the authors' checkpoints: key layouts, loading and writing them, the weights-only loader
        sources=("src/gac_coding/models/checkpoints.py", "src/gac_coding/models/reference.py"),
        # the run files (`load_weights`, `read_weights`, `_model_settings`) are judged by the tests
        # of the training checkpoints, the commands that read them, Hub folders and energy on data;
        # the pinned file spells out the messages, settings and keys of both readers
        tests=(
            "tests/test_checkpoints.py",
            "tests/test_models.py",
            "tests/test_train_checkpoint.py",
            "tests/test_cli.py",
            "tests/test_pretrained.py",
            "tests/test_energy_data.py",
            "tests/test_models_checkpoints_pinned.py",
        ),
    ),
}

#: The parts of the library (the areas of issue 25) as the areas above add them up.
GROUPS: dict[str, tuple[str, ...]] = {
    "ops": (
        "ops-eager",
        "ops-functional-eager",
        "ops-functional-ops",
        "ops-cpp",
        "ops-triton-setup",
        "ops-triton-lif",
        "ops-triton-gated",
        "ops-lean-lif",
        "ops-lean-backends",
        "ops-lean-triton",
        "ops-lean-bn",
        "ops-lean-bn-backward",
        "ops-lean-common",
        "ops-lean-gated",
        "ops-lean-conv",
        "ops-lean-api",
        "neuron",
    ),
    "export": (
        "export-nir-neurons",
        "export-nir-graph",
        "export-nir-convert",
        "export-nir-sim-graph",
        "export-nir-sim-run",
        "export-nir-sim-step",
        "export-onnx-decomp",
        "export-onnx-api",
    ),
    "events": ("events",),
    "energy": ("energy-hooks", "energy-counter", "energy-api"),
    "adapters": (
        "adapters-wrap-net",
        "adapters-wrap-api",
        "adapters-registry",
        "adapters-snntorch",
        "adapters-norse",
        "adapters-spikingjelly",
    ),
    "coding": ("coding-gac", "coding-stem"),
    "models": ("models-nets-resnet", "models-nets-vgg", "models-pretrained", "models-checkpoints"),
    "integrations": ("integrations",),
}

_NO_FUNCTION = "re-exports only: no function for mutmut to mutate"

#: Modules in no area -> why (``fnmatch`` patterns allowed). Mutation testing covers the numerical
#: core; these are glue, the command line and the training loop, judged by their own tests in the
#: ordinary suite.
OUTSIDE: dict[str, str] = {
    "src/gac_coding/__init__.py": _NO_FUNCTION,
    "src/gac_coding/coding/__init__.py": _NO_FUNCTION,
    "src/gac_coding/integrations/__init__.py": _NO_FUNCTION,
    "src/gac_coding/encoder.py": _NO_FUNCTION + " (a deprecated module name)",
    "src/gac_coding/export/nir/__init__.py": _NO_FUNCTION,
    "src/gac_coding/models/__init__.py": _NO_FUNCTION,
    "src/gac_coding/ops/__init__.py": _NO_FUNCTION,
    "src/gac_coding/_deprecated.py": "forwards moved names with a warning (tests/test_coding.py); the "
    "tests check where the warning points, which mutmut's trampolines shift",
    "src/gac_coding/_plotting.py": "where the plots show (tests/test_analysis.py)",
    "src/gac_coding/io.py": "atomic writes, safe readers and the run-settings format (tests/test_io.py, "
    "tests/test_train_checkpoint.py: a crash simulated mid-save)",
    "src/gac_coding/__main__.py": "calls the command line",
    "src/gac_coding/_version.py": "the version string",
    "src/gac_coding/_checks.py": "argument checks shared by every area (tests/test_checks.py)",
    "src/gac_coding/_measure.py": "eval-mode and state-reset context shared by energy and export",
    "src/gac_coding/_lazy.py": "the lazy loader of optional names (tests/test_architecture.py)",
    "src/gac_coding/analysis/*.py": "coding metrics and plots (tests/test_analysis.py)",
    "src/gac_coding/cli/*.py": "the command line, one module per subcommand (tests/test_cli.py)",
    "src/gac_coding/ops/_lean_triton_kernels.py": "@triton.jit kernels (as _triton_kernels.py)",
    "src/gac_coding/ops/_triton_kernels.py": "@triton.jit kernels: mutmut mutates no decorated "
    "function (their arithmetic is judged through the triton backend's tests)",
    "src/gac_coding/train/__init__.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/augment.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/checkpoint.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/config.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/rundir.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/spec.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/data.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/demo.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/distributed.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/engine.py": "the training package (tests/test_train_*.py)",
    "src/gac_coding/train/losses.py": "the training package (tests/test_train_*.py)",
}
