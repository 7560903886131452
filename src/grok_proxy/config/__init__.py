"""Every setting of grok-proxy, read once from the environment and `.env`, in groups by plane."""

from grok_proxy.config.groups import parse_aliases, parse_prices
from grok_proxy.config.settings import Settings, explain, get_settings

__all__ = ["Settings", "explain", "get_settings", "parse_aliases", "parse_prices"]
