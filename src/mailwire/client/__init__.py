"""Client drivers around the sans-I/O core."""
