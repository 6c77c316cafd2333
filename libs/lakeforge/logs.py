"""Logging set up once per process, for the command line and notebooks alike."""

from __future__ import annotations

import logging

LOGGER = "lakeforge"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(verbose: bool = False) -> logging.Logger:
    """Give the `lakeforge` logger one stream handler (a second call only changes the level) and return it."""
    logger = logging.getLogger(LOGGER)
    if not any(getattr(handler, "_lakeforge", False) for handler in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, "%H:%M:%S"))
        handler._lakeforge = True
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    return logger
