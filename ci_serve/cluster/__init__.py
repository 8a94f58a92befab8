"""Everything Ray-specific: the dashboard REST client, the temporary head, package upload."""
