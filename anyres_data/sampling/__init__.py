"""Training patches from a dataset: draw a spec, cut it, batch it (docs/sampler.md, docs/buckets.md).

`draw` picks the square, the scale and the window (pure arithmetic; its names are re-exported here);
`patches` cuts them with libvips; `cache` and `cache_build` are the training cache (an encoded copy
patches are cut from faster); `loader` streams shards into batches of patches and specs
(`make_loader`); `buckets` and `bucket_loader` batch whole images by aspect ratio instead;
`contact_sheet` shows what the sampler draws.
"""

from anyres_data.sampling.draw import DrawnSpec, ImageTooSmall, SamplerSettings, draw_spec, expected_scale

__all__ = ["DrawnSpec", "ImageTooSmall", "SamplerSettings", "draw_spec", "expected_scale"]
