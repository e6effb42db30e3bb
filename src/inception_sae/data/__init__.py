"""Image collections, activation harvesting and the activation store."""
