"""Build the Cython fastpath.

Every ``fastpath/*.pyx`` becomes an extension module ``fastpath.<name>``, with its ``.pxd`` and
the ``.pxi`` units it includes (cythonize rebuilds it when any of them changes). The generated C
file is a build output (``.gitignore``); ``NETLMM_DEBUG_BUILD=1`` turns bounds checks back on
and keeps assertions, like uvloop's debug build.

The kernel tier: ``bpf/netlmm_tc.bpf.c`` (hand-written BPF C, kept out of ``fastpath/`` where
every C file is Cython's output) is compiled with clang (``-O2 -target bpf
-g``) into ``fastpath/netlmm_tc.bpf.o``, shipped in the package (a build output, ``.gitignore``),
before the Python files are collected and before the extensions are built (an editable install
runs only the latter). ``fastpath/_kernel.pyx`` links libbpf (``-lbpf``). Without clang the
object is not built and the node runs the Cython tier (``[node] datapath = auto``) with one log
line saying why; ``NETLMM_CLANG`` names another clang.
"""

import os
import shutil
import subprocess
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
DEBUG = os.environ.get("NETLMM_DEBUG_BUILD") == "1"

extensions = [
    Extension(
        f"fastpath.{pyx.stem}",
        [str(pyx.relative_to(HERE))],
        extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
        define_macros=[] if DEBUG else [("NDEBUG", "1")],
        libraries=["bpf"] if pyx.stem == "_kernel" else [],
        # _kernel.pyx includes "netlmm_tc.h", the programs' header, from bpf/ (the project root
        # itself would let its bpf/ shadow libbpf's <bpf/...> headers)
        include_dirs=[str(HERE / "bpf")] if pyx.stem == "_kernel" else [],
    )
    for pyx in sorted((HERE / "fastpath").glob("*.pyx"))
]

directives = {"language_level": "3"}
if DEBUG:
    directives.update(boundscheck=True, wraparound=True)

BPF_SOURCES = sorted((HERE / "bpf").glob("*.[ch]"))
BPF_OBJECT = HERE / "fastpath" / "netlmm_tc.bpf.o"
#: Debian's multiarch include directory holds asm/types.h, which -target bpf does not look in.
MULTIARCH = Path("/usr/include") / f"{os.uname().machine}-linux-gnu"


def build_bpf() -> None:
    """Compile the TC programs when a source is newer than the object (or it is missing)."""
    if BPF_OBJECT.exists() and all(
        src.stat().st_mtime <= BPF_OBJECT.stat().st_mtime for src in BPF_SOURCES
    ):
        return
    clang = os.environ.get("NETLMM_CLANG") or shutil.which("clang") or shutil.which("clang-14")
    if clang is None:
        print("warning: no clang: the kernel tier's object is not built (Cython tier only)")
        return
    source = HERE / "bpf" / "netlmm_tc.bpf.c"
    command = [clang, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror"]
    if MULTIARCH.is_dir():
        command += ["-I", str(MULTIARCH)]
    subprocess.run([*command, "-c", str(source), "-o", str(BPF_OBJECT)], check=True)


class BuildPy(build_py):
    def run(self) -> None:
        build_bpf()
        super().run()


class BuildExt(build_ext):
    def run(self) -> None:
        build_bpf()
        super().run()


setup(
    ext_modules=cythonize(extensions, compiler_directives=directives) if extensions else [],
    cmdclass={"build_py": BuildPy, "build_ext": BuildExt},
)
