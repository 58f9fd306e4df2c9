"""hfkd models: the CIFAR zoo of the reference toolboxes, adapters for timm / transformers, and the export model."""

from transformers import AutoConfig, AutoModelForImageClassification

from . import zoo  # noqa: F401  (registers the zoo names)
from .configuration_hfkd import HfkdConfig
from .deit_adapter import DeiTFeatureClassifier
from .factory import create_model
from .feature_classifier import FeatureClassifier
from .modeling_hfkd import HfkdForImageClassification
from .outputs import ClassifierOutput
from .reference_checkpoint import infer_reference_arch, load_reference_checkpoint
from .registry import list_zoo_models, register_model
from .input_adapter import TeacherInputAdapter, adapt_teacher_inputs
from .input_size import check_accepts_inputs, required_input_size
from .preprocessing import Preprocessing
from .provenance import CheckpointInfo, ModelProvenance, attach_provenance, provenance_of
from .timm_adapter import TimmFeatureClassifier
from .transformers_adapter import TransformersFeatureClassifier

# After `import hfkd`, plain `AutoModelForImageClassification.from_pretrained(export_dir)` works.
AutoConfig.register(HfkdConfig.model_type, HfkdConfig, exist_ok=True)
AutoModelForImageClassification.register(HfkdConfig, HfkdForImageClassification, exist_ok=True)
# save_pretrained ships the model code (modeling_hfkd.py and every file it imports) and writes `auto_map`, so an
# export also loads with `trust_remote_code=True` where hfkd is not installed.
HfkdConfig.register_for_auto_class()
HfkdForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "CheckpointInfo",
    "ClassifierOutput",
    "DeiTFeatureClassifier",
    "FeatureClassifier",
    "HfkdConfig",
    "HfkdForImageClassification",
    "ModelProvenance",
    "Preprocessing",
    "TeacherInputAdapter",
    "TimmFeatureClassifier",
    "TransformersFeatureClassifier",
    "adapt_teacher_inputs",
    "attach_provenance",
    "check_accepts_inputs",
    "create_model",
    "infer_reference_arch",
    "list_zoo_models",
    "load_reference_checkpoint",
    "provenance_of",
    "register_model",
    "required_input_size",
]
