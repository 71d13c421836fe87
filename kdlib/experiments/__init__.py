"""Experiments as data: the systems under test, the suite runner, and one package per experiment."""

from ..baselines import BASELINES, Baseline

__all__ = ["BASELINES", "Baseline"]
