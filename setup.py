"""Build the Cython fastpath.

Every ``fastpath/*.pyx`` becomes an extension module ``fastpath.<name>``, with its ``.pxd`` and
the ``.pxi`` units it includes (cythonize rebuilds it when any of them changes). The generated C
file is a build output (``.gitignore``); ``NETLMM_DEBUG_BUILD=1`` turns bounds checks back on
and keeps assertions, like uvloop's debug build.
"""

import os
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
DEBUG = os.environ.get("NETLMM_DEBUG_BUILD") == "1"

extensions = [
    Extension(
        f"fastpath.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
        define_macros=[] if DEBUG else [("NDEBUG", "1")],
    )
    for pyx in sorted((HERE / "fastpath").glob("*.pyx"))
]

directives = {"language_level": "3"}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True)

setup(ext_modules=cythonize(extensions, compiler_directives=directives) if extensions else [])
