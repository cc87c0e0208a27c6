"""Evaluation: forensic data-set builder, shortcut audit, leakage rule, metrics, protocols, report."""

from .audit import ShortcutAuditError, file_features, shortcut_audit
from .build import BuildError, build_dataset
from .leakage import LeakageError, check_leakage

__all__ = ["BuildError", "LeakageError", "ShortcutAuditError", "build_dataset", "check_leakage", "file_features",
           "shortcut_audit", "evaluate", "leave_one_generator_out"]


def evaluate(*args, **kwargs):
    """See medfake.evaluation.run.evaluate."""
    from .run import evaluate as _evaluate

    return _evaluate(*args, **kwargs)


def leave_one_generator_out(*args, **kwargs):
    """See medfake.evaluation.protocols.leave_one_generator_out."""
    from .protocols import leave_one_generator_out as _logo

    return _logo(*args, **kwargs)
