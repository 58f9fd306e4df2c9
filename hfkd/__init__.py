"""hfkd: knowledge distillation for image classification on the Hugging Face stack."""

__version__ = "0.1.0"
