"""From request parameters to a typed request: SODA §3 parameters, picture options."""
