"""Feature analytics of a trained SAE: statistics, examples across the spectrum, branch specialization,
neurons vs features, logit facets, labels from classes, UMAP. Entry point: :func:`run.analyze`."""
