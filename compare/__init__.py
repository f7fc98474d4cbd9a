"""Side-by-side comparison of every model on the same patient-disjoint scans (python -m compare)."""
