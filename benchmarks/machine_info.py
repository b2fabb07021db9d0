"""One line on the machine a benchmark or report ran on, shared by the benchmark scripts."""

import os
import platform
from importlib import metadata
from pathlib import Path


def describe(packages=()):
    """Platform, CPU model, core count and Python version, then ``packages``' versions."""
    cpu = platform.processor() or platform.machine()
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
            if cpu and flags:
                break
    except OSError:
        pass
    # The kernels' SIMD loops run twice as many doubles per instruction with AVX-512:
    # the same "AMD EPYC" timed 2-3x apart with and without it.
    vector = {"avx512f": "AVX-512", "avx2": "AVX2", "avx": "AVX"}
    widest = next((name for flag, name in vector.items() if flag in flags), None)
    if widest:
        cpu += f" ({widest})"
    text = f"{platform.platform()}; {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}"
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return text + ("; " + ", ".join(versions) if versions else "")
