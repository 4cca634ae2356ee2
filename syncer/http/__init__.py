"""HTTP: one aiohttp session per run, pacing to rate limits, retries, status mapping."""
