"""Monitoring: captured inference data, drift and data-quality reports, and the alerts they raise."""
