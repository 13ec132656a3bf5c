"""Training (chapter 04): one loop, ``fit``, and one objective per kind of model.

    config.py          TrainConfig and the learning-rate schedules it names
    objective.py       the Objective interface: draw a batch, score the model on it
    diffusion.py       DDPM's noise-prediction loss, condition dropout, loss by timestep
    flow.py            flow matching, with minibatch OT pairing or reflow's fixed pairs (chapter 09)
    classification.py  the judges' cross-entropy objectives, with their augmentation
    autoencoder.py     the autoencoder's reconstruction + KL objective (chapter 08)
    contrastive.py     CLIP's symmetric InfoNCE with same-caption positives (chapter 10)
    prior.py           DALL·E 2's diffusion prior (x_0-prediction) and the regression prior (chapter 10)
    super_resolution.py  the upsampler's crops, noise-conditioning augmentation and loss (chapter 10)
    loop.py            fit: AdamW, schedule, clipping, NaN stop, EMA, progress, checkpoints, DDP
    ema.py, history.py, checkpoint.py, distributed.py   its parts
"""

from diffusion_lab.training.autoencoder import AutoencoderObjective, autoencoder_loss
from diffusion_lab.training.checkpoint import TrainState
from diffusion_lab.training.classification import (
    AttributeObjective,
    ClassifierObjective,
    NoisyClassifierObjective,
)
from diffusion_lab.training.config import (
    LR_SCHEDULES,
    TrainConfig,
    learning_rate,
    one_cycle,
    warmup_stable_decay,
)
from diffusion_lab.training.contrastive import ContrastiveObjective, contrastive_loss, multi_positive_targets
from diffusion_lab.training.diffusion import DiffusionObjective, diffusion_loss, draw_batch, loss_by_timestep
from diffusion_lab.training.ema import EMA
from diffusion_lab.training.flow import FlowMatchingObjective
from diffusion_lab.training.history import LossHistory
from diffusion_lab.training.loop import TrainingDiverged, TrainingInterrupted, fit
from diffusion_lab.training.objective import Objective
from diffusion_lab.training.prior import PriorObjective, RegressionPriorObjective, prior_loss
from diffusion_lab.training.super_resolution import SuperResolutionObjective

__all__ = [
    "ContrastiveObjective", "contrastive_loss", "multi_positive_targets",
    "EMA", "LR_SCHEDULES", "AttributeObjective", "AutoencoderObjective", "autoencoder_loss", "ClassifierObjective", "DiffusionObjective", "FlowMatchingObjective", "LossHistory",
    "NoisyClassifierObjective", "Objective", "PriorObjective", "RegressionPriorObjective", "prior_loss", "TrainConfig", "TrainState", "TrainingDiverged", "TrainingInterrupted", "diffusion_loss",
    "SuperResolutionObjective", "draw_batch", "fit", "learning_rate", "loss_by_timestep", "one_cycle", "warmup_stable_decay",
]
