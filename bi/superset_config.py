"""Superset's settings for the civic warehouse (read through SUPERSET_CONFIG_PATH).

Everything secret comes from the environment, set by ``civic_warehouse.superset``: Superset reads
SUPERSET_SECRET_KEY itself and refuses to start without one. Superset's own metadata (users,
charts, the encrypted connection password) lives in SQLite under SUPERSET_HOME, which Superset
also reads itself; the city's data stays in the warehouse, read as bi_reader.
"""

# A dozen charts: render them all at once rather than as they scroll into view, so a screenshot
# (or a printed page) shows every chart.
FEATURE_FLAGS = {"DASHBOARD_VIRTUALIZATION": False}
