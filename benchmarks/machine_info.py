"""One line on the machine a benchmark or report ran on, shared by the benchmark scripts."""

import os
import platform
from importlib import metadata
from pathlib import Path


def describe(packages=()):
    """Platform, CPU model, core count and Python version, then ``packages``' versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{platform.platform()}; {cpu}, {os.cpu_count()} cores; Python {platform.python_version()}"
    versions = []
    for package in packages:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return text + ("; " + ", ".join(versions) if versions else "")
