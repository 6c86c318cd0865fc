"""What every layer shares: settings, errors and the contract's data models.

``core`` imports nothing from the project's other packages; ``market``, ``rag``,
``actors``, ``serve`` and ``pipelines`` all build on it.
"""
