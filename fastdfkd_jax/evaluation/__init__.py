"""Scoring models on a real test split, the only place real data is used in a data-free run.

- `on_device`: a split uploaded once and kept on device; `Evaluator` counts correct predictions.
- `streamed`: a split read example by example (ImageNet, NYUv2); `StreamEvaluator`, and the
  task's metric names (`METRICS`).
- `segmentation`: the confusion matrix, mean IoU and pixel accuracy.
- `scorer`: a run's test split and the teacher's and student's scores on it (`SplitScorer`).
"""
