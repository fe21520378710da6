"""Training engine: config, optimizer, schedule, checkpoints, distributed helpers, the trainer."""
from .checkpoint import latest_checkpoint, load_train_state, save_checkpoint
from .config import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, ScheduleConfig, TrainConfig
from .config_loader import list_configs, load_config, resolve_config_path, save_config
from .optim import build_optimizer, param_groups
from .schedule import WarmupPolyLR, build_scheduler, lr_factor
from .trainer import Trainer, train

__all__ = [
    "Config", "ModelConfig", "DataConfig", "OptimConfig", "ScheduleConfig", "TrainConfig", "EvalConfig",
    "load_config", "save_config", "list_configs", "resolve_config_path",
    "build_optimizer", "param_groups", "build_scheduler", "WarmupPolyLR", "lr_factor",
    "save_checkpoint", "latest_checkpoint", "load_train_state",
    "Trainer", "train",
]
