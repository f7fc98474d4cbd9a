"""Shared core of the OCT classification project: labels, scan loading, data layouts, splits, metrics.

Every stage (baselines/, train/, space/, compare) imports these; nothing here is copied elsewhere.
"""

from octcore.imaging import ScanError, load_scan
from octcore.labels import CLASSES, REFERRAL, URGENT_CLASSES, label_to_id

__all__ = ["CLASSES", "REFERRAL", "URGENT_CLASSES", "label_to_id", "ScanError", "load_scan"]
