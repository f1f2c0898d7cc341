"""Configuration: typed schemas (Hydra structured configs), composition and start-up validation.

Every option has one home in a dataclass of :mod:`intccms.config.schema`; the YAML files in
``conf/`` only fill or override them. A typo or a wrong type fails at start-up with a message
that names the key.
"""

from intccms.config.compose import compose_config
from intccms.config.schema import RootConfig
from intccms.core.conf import conf_dir
from intccms.core.errors import ConfigError

__all__ = ["ConfigError", "RootConfig", "compose_config", "conf_dir"]
