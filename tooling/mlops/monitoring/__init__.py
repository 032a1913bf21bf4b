"""Monitoring: what a deployed endpoint sees compared with what its model was trained on.

Captured inputs and predictions (``captured``), per-feature drift tests (``stattests``, ``drift``),
data-quality checks (``quality``), and the drift report as JSON and self-contained HTML
(``report_html``), stored in the artifact store (``reports``).
"""
