"""Evaluation: report, clinical-efficacy, classification, localisation, calibration and efficiency metrics.

Modules: ``nlg`` (BLEU/ROUGE-L/CIDEr-D/METEOR/semantic), ``clinical`` (labeler-based CE P/R/F1),
``classification`` (AUROC, AP, max-F1 thresholds, confusion), ``calibration`` (ECE, reliability),
``localization`` (pointing game, IoU, heat-map agreement), ``efficiency`` (parameters, bytes, FLOPs,
interleaved latency, peak memory), ``tradeoff`` (length/detail curves), ``scoring`` (predictions ->
metric blocks), ``summary`` (JSON + markdown), ``run`` (``evaluate()``, the engine of
``meddistill evaluate``).

The result JSON layout is documented in ``docs/eval_schema.md``.
"""
