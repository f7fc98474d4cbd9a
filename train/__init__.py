"""ViT fine-tuning with Accelerate (python -m train), its data pipeline, model card and ONNX export.

Inference lives in `models.vit`; nothing outside train/ imports from here.
"""
