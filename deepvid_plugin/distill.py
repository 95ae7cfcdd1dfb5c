"""Exp-KD's training loss, at its documented import path (``from deepvid_plugin.distill import
CAMDistillLoss``); it lives with its kind in :mod:`deepvid_plugin.methods.cam_agreement.loss`."""

from deepvid_plugin.methods.cam_agreement.loss import (
    CAMDistillLoss,
    CAMMaps,
    DistillOutput,
    class_activation_maps,
    hinton_kd_loss,
)

__all__ = ["CAMDistillLoss", "CAMMaps", "DistillOutput", "class_activation_maps",
           "hinton_kd_loss"]
