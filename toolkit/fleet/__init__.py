"""Many targets: the fleet runner, rate limits and run records."""
