"""Build: Cython extensions from ext/ and protobuf/gRPC stubs from kvcore/api/*.proto.

Switches (environment variables, like asyncpg's setup.py flags):
  KVCORE_CYTHON_ANNOTATE=1   write Cython's HTML annotation next to each .pyx
  KVCORE_DEBUG=1             line tracing + debug defines in the extensions
"""
import glob
import os
import shutil

from setuptools import Command, Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def generate_protos() -> None:
    """Compile kvcore/api/*.proto into *_pb2.py / *_pb2_grpc.py beside them."""
    from grpc_tools import protoc
    import grpc_tools

    protos = sorted(glob.glob(os.path.join(HERE, "kvcore", "api", "*.proto")))
    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    for proto in protos:
        rel = os.path.relpath(proto, HERE)
        out = proto[:-len(".proto")] + "_pb2.py"
        if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(proto):
            continue
        rc = protoc.main(["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={HERE}",
                          f"--grpc_python_out={HERE}", rel])
        if rc != 0:
            raise RuntimeError(f"protoc failed on {rel}")


class build_protos(Command):
    description = "generate protobuf/gRPC stubs"
    user_options = []

    def initialize_options(self):
        pass

    def finalize_options(self):
        pass

    def run(self):
        generate_protos()


class build_py(_build_py):
    def run(self):
        generate_protos()
        super().run()


class build_ext(_build_ext):
    def run(self):
        generate_protos()
        super().run()


# Per-extension build settings (libraries to link, extra sources) by module name.
EXTENSION_SETTINGS: dict = {
    # the native gRPC engine links the system libnghttp2 (Debian libnghttp2-dev);
    # optional at build time: without it `pip install .` still succeeds, and kvcore
    # then refuses to start (kvcore._ext.NativeBuildMissing) unless run with
    # KVCORE_PURE_PYTHON=1 (twins + grpcio); CI fails on it
    "grpc_engine": {"libraries": ["nghttp2"], "optional": True},
    # the CRC-32C instruction (x86-64 SSE4.2), chosen at run time
    "walcodec": {"depends": ["ext/crc32c_hw.h"]},
}


def extensions():
    from Cython.Build import cythonize

    debug = os.environ.get("KVCORE_DEBUG") == "1"
    macros = [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")] if debug else []
    # KVCORE_EXT_ONLY=a,b builds just those modules (handy while one is half-written).
    only = {n for n in os.environ.get("KVCORE_EXT_ONLY", "").split(",") if n}
    exts = []
    for pyx in sorted(glob.glob(os.path.join("ext", "*.pyx"))):
        name = os.path.splitext(os.path.basename(pyx))[0]
        if only and name not in only:
            continue
        settings = dict(EXTENSION_SETTINGS.get(name, {}))
        sources = [pyx] + settings.pop("sources", [])
        exts.append(Extension(f"kvcore._ext.{name}", sources, define_macros=macros,
                              extra_compile_args=["-O2"], **settings))
    # Cython pairs a module's .pxd by its qualified name (kvcore/_ext/<name>.pxd),
    # while the sources sit flat in ext/: mirror the .pxd files into that shape.
    pxd_root = os.path.join("build", "pxd")
    pkg = os.path.join(pxd_root, "kvcore", "_ext")
    os.makedirs(pkg, exist_ok=True)
    for d in (os.path.join(pxd_root, "kvcore"), pkg):
        open(os.path.join(d, "__init__.pxd"), "a").close()
    for pxd in glob.glob(os.path.join("ext", "*.pxd")):
        shutil.copyfile(pxd, os.path.join(pkg, os.path.basename(pxd)))
    directives = {"language_level": "3", "boundscheck": False, "wraparound": False}
    if debug:
        directives.update(linetrace=True, boundscheck=True, wraparound=True)
    return cythonize(exts, compiler_directives=directives,
                     annotate=os.environ.get("KVCORE_CYTHON_ANNOTATE") == "1",
                     include_path=[pxd_root, "ext"])


setup(
    # bench.probes (internal measurements) stays in the checkout, out of the package
    packages=[p for p in __import__("setuptools").find_packages(include=["kvcore*", "bench*"],
                                                               exclude=["bench.probes*"])],
    ext_modules=extensions(),
    cmdclass={"build_py": build_py, "build_ext": build_ext, "build_protos": build_protos},
    package_data={"kvcore.api": ["*.proto"], "kvcore.console": ["static/*"]},
)
