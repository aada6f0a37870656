"""Keep codax error classes intact across TVM's FFI boundary.

Passes run inside `tvm.transform` (C++); an exception raised in a Python pass is re-raised by the FFI
by class *name*. Registering codax's errors makes a MappingError raised in MapLayers reach the caller
as a MappingError instead of a RuntimeError.
"""

from __future__ import annotations

import tvm_ffi

from codax import errors

for _cls in vars(errors).values():
    if isinstance(_cls, type) and issubclass(_cls, errors.CodaxError):
        tvm_ffi.error.register_error(_cls)
