"""Image synthesis from a frozen teacher: losses, DeepInversion, FastDFKD, the pool."""
