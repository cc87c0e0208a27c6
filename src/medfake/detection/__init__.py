"""Detection: is an image real, fully synthetic, or locally manipulated — and where.

Public API: `load_detector`, `detect_paths`, `detect_images`, `write_csv`, `train_detector`, plus the contract
(`Detector`, `Prediction`, `VERDICTS`, `CSV_HEADER`)."""

from .base import CSV_HEADER, VERDICTS, Detector, Prediction
from .calibrate import apply_temperature, fit_temperature, threshold_at_fpr, verdict
from .detector import ShippedDetector, clear_cache, load_detector
from .retrieval import ReferenceBank, reference_files
from .run import COLUMNS, EXTRA_COLUMNS, add_references, detect_images, detect_paths, write_csv
from .train import train_detector

__all__ = [
    "CSV_HEADER", "VERDICTS", "Detector", "Prediction", "apply_temperature", "fit_temperature", "threshold_at_fpr",
    "verdict", "ShippedDetector", "clear_cache", "load_detector", "ReferenceBank", "reference_files", "COLUMNS",
    "EXTRA_COLUMNS", "add_references", "detect_images", "detect_paths", "write_csv", "train_detector",
]
