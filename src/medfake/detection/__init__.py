"""Detection: is an image real, fully synthetic, or locally manipulated — and where.

Public API: `load_detector`, `detect_paths`, `detect_images`, `write_csv`, `train_detector`, `fit_ensemble`, plus the
contract (`Detector`, `Prediction`, `VERDICTS`, `CSV_HEADER`)."""

from .base import CSV_HEADER, VERDICTS, Detector, Prediction
from .calibrate import apply_temperature, fit_temperature, threshold_at_fpr, verdict
from .detector import ShippedDetector, clear_cache, load_detector
from .ensemble import VetoEnsemble, fit_ensemble
from .retrieval import ReferenceBank, reference_files
from .run import COLUMNS, EXTRA_COLUMNS, add_references, detect_images, detect_paths, write_csv


def train_detector(*args, **kwargs):
    """See `medfake.detection.train.train_detector` (imported lazily: training pulls in MONAI transforms)."""
    from .train import train_detector as _train

    return _train(*args, **kwargs)

__all__ = [
    "CSV_HEADER", "VERDICTS", "Detector", "Prediction", "apply_temperature", "fit_temperature", "threshold_at_fpr",
    "verdict", "ShippedDetector", "clear_cache", "load_detector", "ReferenceBank", "reference_files", "COLUMNS",
    "EXTRA_COLUMNS", "add_references", "detect_images", "detect_paths", "write_csv", "train_detector", "VetoEnsemble",
    "fit_ensemble",
]
