"""Metrics on generated answers: accuracy, macro-F1, exact match, token F1."""

from gemma_panel.evaluation.metrics import accuracy, exact_match, macro_f1, normalize, token_f1

__all__ = ["accuracy", "exact_match", "macro_f1", "normalize", "token_f1"]
