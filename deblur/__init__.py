"""The step-conditioned deblurring network: model, training and inference."""
