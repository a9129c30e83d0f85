from setuptools import Extension, setup

setup(
    # The core, bound by cffi (its build script reads shmbus.h).
    cffi_modules=["shmbus/_native/build.py:ffibuilder"],
    # The per-record paths in CPython's C API, which call the core through cffi's
    # function pointers (see shmbus/_native/cpython/fastpath.h). Only PyInit is exported.
    ext_modules=[Extension("shmbus._native._fastpath",
                           [f"shmbus/_native/cpython/{name}.c" for name in ("module", "route", "send", "reserve",
                                                                             "consume")],
                           include_dirs=["shmbus/_native", "shmbus/_native/cpython"],
                           depends=["shmbus/_native/cpython/fastpath.h", "shmbus/_native/shmbus.h"],
                           extra_compile_args=["-O2", "-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                                               "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                               "-Wno-cast-function-type"])],
)
