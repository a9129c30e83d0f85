from setuptools import setup

setup(cffi_modules=["shmbus/_native/build.py:ffibuilder"])
