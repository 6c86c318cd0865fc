"""Research: vectorised backtests, parameter grids and their statistics (no Ray here)."""
