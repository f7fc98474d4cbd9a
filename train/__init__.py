"""ViT fine-tuning (python -m train), its data pipeline, inference and ONNX export."""
