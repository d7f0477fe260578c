"""The installed distribution's version: pyproject.toml is its one source."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ssmprobe")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"
