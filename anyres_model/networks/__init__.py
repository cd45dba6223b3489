"""The networks: the any-resolution generator (StyleGAN3-T with patch coordinates and scale conditioning) and
the StyleGAN2 residual discriminator. They know nothing of training."""
