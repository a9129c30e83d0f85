from setuptools import Extension, setup

setup(
    # The core, bound by cffi (its build script reads shmbus.h).
    cffi_modules=["shmbus/_native/build.py:ffibuilder"],
    # The per-record paths in CPython's C API, which call the core through cffi's
    # function pointers (see the file's opening comment).
    ext_modules=[Extension("shmbus._native._fastpath", ["shmbus/_native/cpython/fastpath.c"],
                           include_dirs=["shmbus/_native"],
                           extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                                               "-Wno-missing-field-initializers", "-Wno-cast-function-type"])],
)
