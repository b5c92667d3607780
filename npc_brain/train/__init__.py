"""Fine-tuning the voice: LoRA on our own PyTorch Llama, behaviour data, the training run.

Only the training and bundle-building paths import this package; serving never needs torch.
"""
