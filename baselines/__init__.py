"""Classical baselines: HOG and LBP features of the flattened retina (features), the SVM (model),
its feature cache (cache), saving and publishing (io), and the trainer (python -m baselines.train).

A trained folder is loaded through `models.load_model`."""
