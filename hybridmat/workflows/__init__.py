"""Workflows over the layers below: train, evaluate, predict, export, Matbench, importance."""
