"""Market model: depth curves, execution of forced orders into them, impact and resilience."""
