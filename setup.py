from setuptools import setup

setup(cffi_modules=["sim/build_sim.py:ffibuilder"])
