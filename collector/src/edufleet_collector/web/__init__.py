"""The collector's web side: the JSON API, QR pages, engineer and admin pages."""
