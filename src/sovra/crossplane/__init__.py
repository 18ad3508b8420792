"""Crossplane: the InferenceService XRD, its Composition, and the composition function."""
