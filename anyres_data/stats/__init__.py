"""What datasets hold, from their manifests: `compute` gives the numbers (pandas frames), `plots` their figures
(matplotlib, imported only by who draws them). `anyres-data stats` prints them (docs/stats.md)."""
