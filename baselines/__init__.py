"""Classical baselines: HOG and LBP features of the flattened retina, with SVMs."""
