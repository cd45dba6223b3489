"""anyres_model: an any-resolution generator, its training and its evaluation."""
