"""Preference objectives behind one interface (see base.py and docs/ARCHITECTURE.md section 3).

There is no registry: ``conf/loss/<name>.yaml``'s ``objective._target_`` names the class.
"""

from napo_lab.losses.base import LossInputs, LossOutput, PreferenceLoss
from napo_lab.losses.cdpo import CDPOLoss
from napo_lab.losses.dmpo import DMPOLoss
from napo_lab.losses.dpo import DPOLoss
from napo_lab.losses.ipo import IPOLoss
from napo_lab.losses.napo import NAPOLoss
from napo_lab.losses.recpo import RecPOLoss
from napo_lab.losses.rosepo import RosePOLoss
from napo_lab.losses.sdpo import SDPOLoss
from napo_lab.losses.sft import SFTLoss
from napo_lab.losses.simpo import SimPOLoss

__all__ = [
    "CDPOLoss",
    "DMPOLoss",
    "DPOLoss",
    "IPOLoss",
    "LossInputs",
    "LossOutput",
    "NAPOLoss",
    "PreferenceLoss",
    "RecPOLoss",
    "RosePOLoss",
    "SDPOLoss",
    "SFTLoss",
    "SimPOLoss",
]
