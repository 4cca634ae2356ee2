"""Simulators of the vendor APIs (aiohttp.web apps on loopback), strict to the contracts."""
