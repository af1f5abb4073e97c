"""Build the compiled kernels of fastconv.

Environment switches:
    FASTCONV_NO_OPENMP=1  build single-threaded kernels even where OpenMP works.
    FASTCONV_NATIVE=1     add -march=native (faster here, not portable).
    FASTCONV_DEBUG=1      Cython bounds/wraparound/initialisation checks, -O0 -g.
    FASTCONV_SANITIZE=1   AddressSanitizer + UndefinedBehaviorSanitizer with the same
                          Cython checks, -O1 -g (run with libasan preloaded: see
                          tools/sanitize.sh). Implies the checks of FASTCONV_DEBUG.
    FASTCONV_ONLY=a,b     developers: rebuild only these extensions (e.g. _pooling).
"""
import os
import platform
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
# reductions; pooling and the trainer's elementwise passes must not (NaN handling, exact
# comparisons, the same bits as NumPy), nor contract a*b + c into one rounding (FMA).
EXTENSIONS = {
    "fastconv._ext._build_info": ("src/fastconv/_ext/_build_info.pyx", True, False),
    "fastconv._ext._conv_direct": ("src/fastconv/_ext/_conv_direct.pyx", True, True),
    "fastconv._ext._conv_im2col": ("src/fastconv/_ext/_conv_im2col.pyx", True, True),
    "fastconv._ext._conv_winograd": ("src/fastconv/_ext/_conv_winograd.pyx", True, True),
    "fastconv._ext._conv_grouped": ("src/fastconv/_ext/_conv_grouped.pyx", True, True),
    "fastconv._ext._pooling": ("src/fastconv/_ext/_pooling.pyx", True, False),
    "fastconv._ext._elementwise": ("src/fastconv/_ext/_elementwise.pyx", True, False),
    "fastconv._ext._gemm": ("src/fastconv/_ext/_gemm.pyx", True, False),
    "fastconv._ext._layout": ("src/fastconv/_ext/_layout.pyx", True, False),
}

# Each kernel module is also built for newer x86-64 levels; fastconv._ext loads the
# best one the CPU runs (as NumPy dispatches its own loops). The portable build
# stays the baseline, so one install works on any x86-64 CPU.
KERNEL_MODULES = ("_conv_direct", "_conv_im2col", "_conv_winograd", "_conv_grouped", "_pooling")
CPU_VARIANTS = {"x86_64_v3": ["-march=x86-64-v3"], "x86_64_v4": ["-march=x86-64-v4"]}

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


SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                  "-fno-sanitize-recover=undefined"]


def compiler_accepts(flags):
    """Can the configured C compiler build a trivial program with these flags?"""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "probe.c")
        with open(source, "w") as fh:
            fh.write("int main(void) { return 0; }\n")
        try:
            subprocess.run([shutil.which(compiler) or "cc", *flags, source, "-o", os.path.join(tmp, "probe")],
                           check=True, capture_output=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
    return True


def cpu_variants(mode):
    """{suffix: flags} of the extra builds: x86-64 only, release builds, not with -march=native."""
    if mode != "release" or _flag("FASTCONV_NATIVE"):
        return {}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    return {suffix: flags for suffix, flags in CPU_VARIANTS.items() if compiler_accepts(flags)}


def variant_source(source, suffix):
    """A copy of `source` named after the variant's module (Cython names a module after its file)."""
    directory = os.path.join("build", "variant-src", os.path.relpath(os.path.dirname(source), "src"))
    os.makedirs(directory, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(source))
    target = os.path.join(directory, f"{stem}_{suffix}{ext}")
    with open(source) as fh:
        text = fh.read()
    if not os.path.exists(target) or open(target).read() != text:  # keep mtimes for incremental builds
        with open(target, "w") as fh:
            fh.write(text)
    return target


def build_mode():
    """"sanitize", "debug" or "release": decides flags, directives and the C directory."""
    if _flag("FASTCONV_SANITIZE"):
        return "sanitize"
    return "debug" if _flag("FASTCONV_DEBUG") else "release"


def build_extensions():
    mode = build_mode()
    debug = mode != "release"  # Cython's checks on, no float reassociation
    use_openmp = openmp_works()
    base_flags = {"release": ["-O3"], "debug": ["-O0", "-g"],
                  "sanitize": ["-O1", "-g", *SANITIZE_FLAGS]}[mode]
    base_link = SANITIZE_FLAGS if mode == "sanitize" else []
    if _flag("FASTCONV_NATIVE"):
        base_flags.append("-march=native")
    only = {n for n in os.environ.get("FASTCONV_ONLY", "").split(",") if n}
    variants = cpu_variants(mode)
    extensions = []
    for name, (source, needs_openmp, reassociate) in EXTENSIONS.items():
        short = name.rsplit(".", 1)[1]
        if only and short not in only:
            continue
        builds = {"": (source, [])}
        if short in KERNEL_MODULES:
            builds.update({f"_{suffix}": (variant_source(source, suffix), flags)
                           for suffix, flags in variants.items()})
        for suffix, (variant_src, variant_flags) in builds.items():
            compile_args = list(base_flags) + variant_flags
            link_args = list(base_link)
            if reassociate and not debug:
                compile_args += REASSOCIATE_FLAGS
            elif not reassociate:
                compile_args.append("-ffp-contract=off")    # no FMA either: NumPy's bits
            if needs_openmp and use_openmp:
                compile_args.append("-fopenmp")
                link_args.append("-fopenmp")
            extensions.append(Extension(
                name + suffix,
                sources=[variant_src],
                include_dirs=[numpy.get_include()],
                define_macros=[
                    ("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                    ("FASTCONV_BUILD_FLAGS", '"%s"' % " ".join(compile_args)),
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
    sys.stderr.write("fastconv: OpenMP %s, flags %s, CPU variants: baseline %s\n"
                     % ("on" if use_openmp else "off", " ".join(base_flags), " ".join(variants)))
    # Generated C goes to a directory per mode: cythonize does not notice a change
    # of directives alone, and a debug .c must never be compiled into a release build.
    return cythonize(extensions, compiler_directives=directives, include_path=["src"],
                     build_dir=os.path.join("build", "cython", mode),
                     quiet=True)


setup(ext_modules=build_extensions())
