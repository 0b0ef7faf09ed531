"""Deployment: one job file, submitted to the embedded local Ray, a Ray cluster, Slurm or Kubernetes."""
