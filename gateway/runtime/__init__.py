"""The running daemon: wiring, the watchdog, the dispatcher, the channels, background tasks."""
