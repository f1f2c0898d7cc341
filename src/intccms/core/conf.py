"""Where the configuration tree is, and the facts read from it by code that runs without a
composed configuration (the demo generator, the synthetic statistics model, schema defaults).

Era facts (years, luminosities, correction folders and keys) live in ``conf/eras/run2.yaml`` and
the JES uncertainty sources in ``conf/corrections/run2.yaml``; everything reads them from there.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any, cast

from omegaconf import OmegaConf

from intccms.core.errors import ConfigError

ERAS_FILE = "eras/run2.yaml"
CORRECTIONS_FILE = "corrections/run2.yaml"


def repo_root() -> Path:
    """Repository root when running from a source checkout (``src/intccms/core`` -> root)."""
    return Path(__file__).resolve().parents[3]


def conf_dir() -> Path:
    """Directory holding the Hydra configuration tree.

    ``INTCCMS_CONF_DIR`` wins (container images copy ``conf/`` to a fixed place); otherwise the
    ``conf/`` folder of the source checkout.
    """
    env = os.environ.get("INTCCMS_CONF_DIR")
    path = Path(env) if env else repo_root() / "conf"
    if not (path / "demo.yaml").is_file():
        msg = (
            f"configuration directory {path} has no demo.yaml; set INTCCMS_CONF_DIR to the "
            "project's conf/ folder"
        )
        raise ConfigError(msg)
    return path


@cache
def read_conf(relative: str) -> dict[str, Any]:
    """One file of the configuration tree as plain data (interpolations left unresolved)."""
    return cast("dict[str, Any]", OmegaConf.to_container(OmegaConf.load(conf_dir() / relative), resolve=False))


def run2_eras() -> dict[str, dict[str, Any]]:
    """The UL Run-2 eras by name: ``year``, ``luminosity`` (pb^-1), ``correction_folder``, ..."""
    return read_conf(ERAS_FILE)


def era_luminosities() -> dict[str, float]:
    """Integrated luminosity (pb^-1) of every UL Run-2 era."""
    return {name: float(era["luminosity"]) for name, era in run2_eras().items()}


def jes_sources() -> list[dict[str, str]]:
    """The JES uncertainty sources of the JEC correction, in order: ``source`` and the
    ``variation`` name (with ``{year}`` where the source is decorrelated between years)."""
    jec = read_conf(CORRECTIONS_FILE)["definitions"]["jec"]
    return [dict(s) for s in jec["jes_sources"]]
