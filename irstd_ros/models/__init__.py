"""Networks: blocks, the SGEM-UNet model, heads, configs and the name registry."""

from irstd_ros.models.config import NAMED_CONFIGS, ModelConfig, named_config
from irstd_ros.models.registry import MODELS, build_model

__all__ = ["MODELS", "NAMED_CONFIGS", "ModelConfig", "build_model", "named_config"]
