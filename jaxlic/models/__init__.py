"""The model zoo."""

from jaxlic.models.config import MSE_LAMBDAS, ModelConfig
from jaxlic.models.registry import ARCHITECTURES, build_model, get_model, init_params, model_config

__all__ = ["ARCHITECTURES", "MSE_LAMBDAS", "ModelConfig", "build_model", "get_model", "init_params", "model_config"]
