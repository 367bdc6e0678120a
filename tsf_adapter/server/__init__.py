"""The process: the aiohttp application, its probes, the event loop choice and the daemon's lifecycle."""
