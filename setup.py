"""Build the compiled kernels of fastconv.

Environment switches:
    FASTCONV_NO_OPENMP=1  build single-threaded kernels even where OpenMP works.
    FASTCONV_NATIVE=1     add -march=native (faster here, not portable).
    FASTCONV_DEBUG=1      Cython bounds/wraparound/initialisation checks, -O0 -g.
    FASTCONV_ONLY=a,b     developers: rebuild only these extensions (e.g. _pooling).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# name -> (source, needs_openmp, reassociate_floats)
# Convolution kernels may reassociate float sums so the compiler can vectorise
# reductions; pooling must not (NaN handling and exact comparisons).
EXTENSIONS = {
    "fastconv._ext._build_info": ("src/fastconv/_ext/_build_info.pyx", True, False),
    "fastconv._ext._conv_direct": ("src/fastconv/_ext/_conv_direct.pyx", True, True),
    "fastconv._ext._conv_im2col": ("src/fastconv/_ext/_conv_im2col.pyx", True, True),
    "fastconv._ext._pooling": ("src/fastconv/_ext/_pooling.pyx", True, False),
}

REASSOCIATE_FLAGS = ["-fno-math-errno", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math"]

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _flag(name):
    return os.environ.get(name, "").strip() not in ("", "0", "false", "False")


def openmp_works():
    """Compile, link and run a tiny OpenMP program with the configured C compiler."""
    if _flag("FASTCONV_NO_OPENMP"):
        return False
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        compiler = "cc"
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        binary = os.path.join(tmp, "probe")
        with open(source, "w") as fh:
            fh.write(OPENMP_PROBE)
        try:
            subprocess.run([compiler, "-fopenmp", source, "-o", binary],
                           check=True, capture_output=True, timeout=120)
            subprocess.run([binary], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


def build_extensions():
    debug = _flag("FASTCONV_DEBUG")
    use_openmp = openmp_works()
    base_flags = ["-O0", "-g"] if debug else ["-O3"]
    if _flag("FASTCONV_NATIVE"):
        base_flags.append("-march=native")
    only = {n for n in os.environ.get("FASTCONV_ONLY", "").split(",") if n}
    extensions = []
    for name, (source, needs_openmp, reassociate) in EXTENSIONS.items():
        if only and name.rsplit(".", 1)[1] not in only:
            continue
        compile_args = list(base_flags)
        link_args = []
        if reassociate and not debug:
            compile_args += REASSOCIATE_FLAGS
        if needs_openmp and use_openmp:
            compile_args.append("-fopenmp")
            link_args.append("-fopenmp")
        build_flags = " ".join(compile_args)
        extensions.append(Extension(
            name,
            sources=[source],
            include_dirs=[numpy.get_include()],
            define_macros=[
                ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                ("FASTCONV_BUILD_FLAGS", '"%s"' % build_flags),
            ],
            extra_compile_args=compile_args,
            extra_link_args=link_args,
        ))
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "cdivision": not debug,
        "nonecheck": False,
        "embedsignature": True,
    }
    sys.stderr.write("fastconv: OpenMP %s, flags %s\n"
                     % ("on" if use_openmp else "off", " ".join(base_flags)))
    # Generated C goes to a directory per mode: cythonize does not notice a change
    # of directives alone, and a debug .c must never be compiled into a release build.
    return cythonize(extensions, compiler_directives=directives, include_path=["src"],
                     build_dir=os.path.join("build", "cython", "debug" if debug else "release"),
                     quiet=True)


setup(ext_modules=build_extensions())
