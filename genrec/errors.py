"""Errors a user can act on. The CLI prints these as one line (no traceback) and exits non-zero."""
from __future__ import annotations


class GenrecError(Exception):
    """Base for every error that names a file or setting and the problem with it."""


class InputError(GenrecError):
    """Input data is missing, unreadable, empty or lacks a required column."""


class ConfigError(GenrecError):
    """A setting is invalid or two settings contradict each other."""


class TrainingError(GenrecError):
    """Training could not produce a model (NaN loss, no data, a worker died)."""


class PromotionConflict(GenrecError):
    """Another run changed the champion pointer between our read and our write."""
