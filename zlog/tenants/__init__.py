"""Tenants: every record belongs to one; ``ids`` says which names are tenant ids."""
