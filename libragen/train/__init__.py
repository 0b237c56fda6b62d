"""Trainers: the shared rectified-flow loop, VGFM pre-training, LoRA SFT and merging, Flow-DPO and its pairs."""
