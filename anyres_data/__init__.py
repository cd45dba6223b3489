"""anyres_data: build any-resolution image datasets and cut training patches from them."""

from anyres_data.candidate import Candidate, sample_key
from anyres_data.spec import PatchSpec, spec_axes, spec_grid

__all__ = ["Candidate", "PatchSpec", "sample_key", "spec_axes", "spec_grid"]
