"""hfkd: knowledge distillation for image classification on the Hugging Face stack.

Importing hfkd registers its export classes with transformers' Auto classes, so that
``AutoModelForImageClassification.from_pretrained(export_dir)`` loads an hfkd export without remote code.
"""

from . import models as _models  # noqa: F401  (registers HfkdConfig / HfkdForImageClassification)

__version__ = "0.1.0"
