"""One module per dataset layout; `segadapter.data.registry` maps names to them."""
