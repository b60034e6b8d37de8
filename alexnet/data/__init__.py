"""Reading CIFAR-100 safely and turning it into batches on the training device."""
