"""
Transaction records and where they go: the JSON-lines history, the access
log, and the events every observer sees.
"""
