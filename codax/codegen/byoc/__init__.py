"""TVM BYOC for codax: ``relax.ext.codax`` runs offloaded layers on the accelerator's engine.

- :mod:`.glue`: the codegen registered as ``relax.ext.codax`` -- per offloaded function, a TVM FFI
  glue unit that checks the tensors and calls the layers, compiled and linked as a static library.
- :mod:`.composite`: reading a codax composite (one layer) off its Relax body.
- :mod:`.engine_kernels`: the kernel factory that makes every layer one call of the engine.
- :mod:`.core_kernels`: the kernel factory that makes every layer one program of the GEMM core.

``build_executable(mod, accel)`` (the descriptor engine) and ``build_core_executable(mod, accel)`` (the
GEMM core) are the entry points: a ``codax.passes.pipeline(accel)`` output in, a
``tvm.runtime.Executable`` out.
"""

from codax.codegen.byoc.core_kernels import CoreCall, CoreKernelFactory, build_core_executable
from codax.codegen.byoc.engine_kernels import MARKER, EngineCall, EngineKernelFactory, build_executable
from codax.codegen.byoc.glue import (
    C_TYPES,
    CODEGEN,
    GeneratedFunction,
    KernelSource,
    LayerSpec,
    TensorInfo,
    build,
    c_array,
    compile_function,
    embed_bytes,
    generate,
    offloaded_calls,
    register,
    run_codegen,
    unregister,
)

__all__ = [
    "MARKER",
    "EngineCall",
    "EngineKernelFactory",
    "build_executable",
    "CoreCall",
    "CoreKernelFactory",
    "build_core_executable",
    "C_TYPES",
    "CODEGEN",
    "GeneratedFunction",
    "KernelSource",
    "LayerSpec",
    "TensorInfo",
    "build",
    "c_array",
    "compile_function",
    "embed_bytes",
    "generate",
    "offloaded_calls",
    "register",
    "run_codegen",
    "unregister",
]
