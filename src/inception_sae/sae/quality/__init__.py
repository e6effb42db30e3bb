"""SAE quality beyond reconstruction: feature absorption on a hierarchy, seed stability, sparse probing and
L0 advice (docs/quality.md). Every number carries its sample size and a 95% interval."""
