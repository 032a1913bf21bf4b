"""Monitoring: what live endpoints were asked, compared with what their models were trained on.

``baseline`` (the training data pinned in a version's lineage), ``captured`` (inputs and predictions
the scoring server recorded), ``columns``/``stattests``/``drift``/``quality``/``profile`` (the
statistics), ``report_html``/``reports`` (the report, and where it is kept), ``operational`` (metrics and alert rules), ``monitor`` (the
``mlops monitor`` story).
"""
