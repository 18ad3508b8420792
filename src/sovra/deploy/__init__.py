"""Many machines: the same InferenceService declarations as Kubernetes resources (`sovra render`)."""
