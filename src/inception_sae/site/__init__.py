"""The static feature dashboard: ``build_site`` (analysis folders -> offline site) and its server."""

from .build import BuildResult, build_site
from .config import ServeConfig, SiteConfig
from .server import make_server

__all__ = ["BuildResult", "ServeConfig", "SiteConfig", "build_site", "make_server"]
