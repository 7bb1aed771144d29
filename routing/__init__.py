"""Routing: graphs, evacuation routes and nearest resources (issue 3; nothing here yet)."""
