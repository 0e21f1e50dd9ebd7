"""MedDistill Studio: knowledge-distilled medical image report generation (demonstration and teaching only)."""
