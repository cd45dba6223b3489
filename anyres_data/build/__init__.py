"""The build: a source's candidates in, a dataset on disk out (`anyres_data.dataset`), one Dask task per shard.

One candidate goes plan (partitions, pre-download filters) → fetch → probe → filters → [resize] →
dedup's hash → ingest (a `Sample` or a named `Rejected`); `job` runs that per shard on Dask, retries
the transient failures and finalizes (duplicates, manifest, rejects, dataset.json). `subset` picks a
seeded subset of the candidates. Each stage is a plain function usable without Dask (docs/build.md).
"""

from anyres_data.build.job import BuildError, BuildSettings, EmptyBuildError, build

__all__ = ["BuildError", "BuildSettings", "EmptyBuildError", "build"]
