"""alexnet-sweeps: Hydra-orchestrated hyperparameter sweeps of AlexNet on CIFAR-100."""
