"""setup.py - builds libkvlm.so with the repository's Makefile and ships it in the package.

`pip install ./python` (pip >= 21.3 builds a local directory in place) runs build_py below:
it finds the kvlm checkout as this file's parent directory (or $KVLM_SOURCE_DIR), runs
`make -C <root> shared` there, asks the Makefile where the library is (`make shared-path`)
and copies it into the built package as kvlm/libkvlm.so, which kvlm/_capi.py loads from the
package's own directory. The wheel is tagged for this platform (it holds a native library)
but for any Python 3 (ctypes, no extension module).
"""
import os
import shutil
import subprocess
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel  # type: ignore

HERE = os.path.dirname(os.path.abspath(__file__))


def kvlm_root():
    """The kvlm checkout: python/.. when it holds the Makefile and include/kvlm.h, else
    $KVLM_SOURCE_DIR; a clear error otherwise (an old pip that copies the directory away)."""
    for root in (os.path.dirname(HERE), os.environ.get("KVLM_SOURCE_DIR")):
        if root and all(os.path.isfile(os.path.join(root, f)) for f in ("Makefile", "include/kvlm.h", "src/kvlm.map")):
            return os.path.abspath(root)
    sys.exit("kvlm: cannot find the kvlm checkout (the directory above python/ with its Makefile); "
             "build from a checkout with pip >= 21.3 (`pip install ./python`), or set KVLM_SOURCE_DIR to it")


def make(root, *args):
    cmd = ["make", "--no-print-directory", "-C", root, *args]
    try:
        return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"kvlm: `{' '.join(cmd)}` failed ({e}); the C build needs the Debian packages of "
                 "scripts/setup-deps.sh")


class BuildPyWithLib(build_py):
    """build_py, then libkvlm.so built by the Makefile into build_lib/kvlm/."""

    def run(self):
        super().run()
        root = kvlm_root()
        jobs = str(os.cpu_count() or 2)
        sys.stderr.write(make(root, f"-j{jobs}", "shared"))
        lib = make(root, "-s", "shared-path").strip()
        src = os.path.join(root, lib)
        if not os.path.isfile(src):
            sys.exit(f"kvlm: make shared did not build {src}")
        dst = os.path.join(self.build_lib, "kvlm", "libkvlm.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)


class PlatformWheel(bdist_wheel):
    """py3-none-<platform>: a native library inside, no extension module."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(cmdclass={"build_py": BuildPyWithLib, "bdist_wheel": PlatformWheel})
