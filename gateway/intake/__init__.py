"""Edges that take input from outside: SMTP heartbeats, inbound SMS."""
