"""Sampling (chapter 05): DDPM and DDIM as diffusers-shaped schedulers, and one visible loop over them.

    scheduler.py   predict_x0, StepOutput, the Scheduler base (timestep grid, checks)
    ddpm.py        the posterior, ddpm_step, DDPMScheduler          (Ho et al. 2020)
    ddim.py        ddim_sigma, ddim_step, DDIMScheduler             (Song et al. 2021)
    loop.py        sample, Trajectory: the loop and a callback that records it
    sdedit.py      sdedit, sdedit_start: image-to-image from a partly noised picture (chapter 08)
    repaint.py     repaint: inpainting by replacing the known region at every step (chapter 11)
    thresholding.py  dynamic_threshold, dynamic_thresholding: Imagen's, in pixel or latent space (chapter 11)
"""

from diffusion_lab.sampling.ddim import DDIMScheduler, ddim_sigma, ddim_step
from diffusion_lab.sampling.ddpm import DDPMScheduler, ddpm_step, posterior_mean_variance
from diffusion_lab.sampling.loop import Callback, Model, Trajectory, record_trajectory, sample
from diffusion_lab.sampling.repaint import repaint
from diffusion_lab.sampling.scheduler import Scheduler, StepOutput, predict_x0
from diffusion_lab.sampling.sdedit import sdedit, sdedit_start
from diffusion_lab.sampling.thresholding import dynamic_threshold, dynamic_thresholding

__all__ = [
    "Callback", "DDIMScheduler", "DDPMScheduler", "Model", "Scheduler", "StepOutput", "Trajectory", "ddim_sigma",
    "ddim_step", "ddpm_step", "posterior_mean_variance", "predict_x0", "record_trajectory", "sample",
    "sdedit", "sdedit_start", "repaint", "dynamic_threshold", "dynamic_thresholding",
]
