"""The whole pipeline for a layer (``inception-sae run``) and the small-scale demo."""
