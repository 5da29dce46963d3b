"""The background worker that ``edufleet worker`` runs."""
